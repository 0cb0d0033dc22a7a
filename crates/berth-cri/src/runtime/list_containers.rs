//! ListContainers with its id (prefix), state, pod and label filters.

use super::container_status::{image_ref, image_spec, metadata, state};
use crate::convert;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn list_containers(
        &self,
        req: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, CriError> {
        let f = req.filter.unwrap_or_default();
        let pod = (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id.as_str());
        let mut containers = Vec::new();
        for rec in self.runtime.list_containers(Some(&self.ns), None)? {
            if !rec.id.starts_with(&f.id)
                || pod.is_some_and(|p| !rec.pod_id.starts_with(p))
                || !convert::selects(&f.label_selector, &rec.config.labels)
            {
                continue;
            }
            let st = state(self.runtime.container_status(&rec)?.state) as i32;
            if f.state.as_ref().is_some_and(|s| s.state != st) {
                continue;
            }
            containers.push(v1::Container {
                id: rec.id.clone(),
                pod_sandbox_id: rec.pod_id.clone(),
                metadata: Some(metadata(&rec)),
                image: Some(image_spec(&rec)),
                image_ref: image_ref(&rec),
                state: st,
                created_at: rec.created_at,
                labels: convert::hash(&rec.config.labels),
                annotations: convert::hash(&rec.config.annotations),
                image_id: self.image_id_of(&rec),
            });
        }
        Ok(v1::ListContainersResponse { containers })
    }
}
