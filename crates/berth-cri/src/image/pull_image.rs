//! PullImage into the CRI namespace, with the request's credentials when
//! it brings any.

use berth_image::{Images, PullOptions};

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) async fn pull_image(
        &self,
        req: v1::PullImageRequest,
    ) -> Result<v1::PullImageResponse, CriError> {
        let reference = req.image.map(|i| i.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(CriError::InvalidArgument("PullImage: image is empty".into()));
        }
        let images = match req.auth.map(creds).transpose()?.flatten() {
            Some(c) => {
                let cfg = berth_registry::ClientConfig {
                    creds: Some(c),
                    ..self.registry.clone()
                };
                let client = berth_registry::Client::new(cfg)
                    .map_err(|e| CriError::Internal(format!("registry client for {reference}: {e}")))?;
                std::sync::Arc::new(Images::new(self.images.store().clone(), client))
            }
            None => self.images.clone(),
        };
        let report = images.pull(&self.ns, &reference, &PullOptions::default()).await?;
        tracing::info!(image = %report.image.name, fetched = report.layers_fetched, "image pulled");
        Ok(v1::PullImageResponse {
            image_ref: report.config.to_string(),
        })
    }
}

/// USER:PASSWORD from an AuthConfig: its fields, else its base64 `auth`.
fn creds(a: v1::AuthConfig) -> Result<Option<(String, String)>, CriError> {
    if !a.username.is_empty() {
        return Ok(Some((a.username, a.password)));
    }
    if a.auth.is_empty() {
        if !a.identity_token.is_empty() || !a.registry_token.is_empty() {
            return Err(CriError::InvalidArgument(
                "PullImage: identity and registry tokens are not supported; use username and password".into(),
            ));
        }
        return Ok(None);
    }
    let decoded = base64_decode(&a.auth)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| CriError::InvalidArgument("PullImage: auth is not base64 of USER:PASSWORD".into()))?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or_else(|| CriError::InvalidArgument("PullImage: auth is not base64 of USER:PASSWORD".into()))?;
    Ok(Some((u.to_string(), p.to_string())))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_fields_or_auth() {
        let a = v1::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        assert_eq!(creds(a).unwrap(), Some(("u".into(), "p".into())));
        let a = v1::AuthConfig {
            auth: "dTpwOnE=".into(),
            ..Default::default()
        };
        assert_eq!(creds(a).unwrap(), Some(("u".into(), "p:q".into())));
        assert_eq!(creds(v1::AuthConfig::default()).unwrap(), None);
    }
}
