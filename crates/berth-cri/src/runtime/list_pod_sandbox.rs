//! ListPodSandbox with its id (prefix), state and label filters.

use super::pod_sandbox_status::{annotations, metadata, state};
use crate::convert;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn list_pod_sandbox(
        &self,
        req: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, CriError> {
        let f = req.filter.unwrap_or_default();
        let items = self
            .runtime
            .list_pods(Some(&self.ns))?
            .into_iter()
            .filter(|p| p.id.starts_with(&f.id))
            .filter(|p| f.state.as_ref().is_none_or(|s| s.state == state(p) as i32))
            .filter(|p| convert::selects(&f.label_selector, &p.config.labels))
            .map(|p| v1::PodSandbox {
                id: p.id.clone(),
                metadata: Some(metadata(&p)),
                state: state(&p) as i32,
                created_at: p.created_at,
                labels: convert::hash(&p.config.labels),
                annotations: annotations(&p),
                runtime_handler: p.config.runtime_handler.clone(),
            })
            .collect();
        Ok(v1::ListPodSandboxResponse { items })
    }
}
