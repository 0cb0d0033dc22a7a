//! ListPodSandboxStats: stats of the ready pods that match the filter.

use crate::convert;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn list_pod_sandbox_stats(
        &self,
        req: v1::ListPodSandboxStatsRequest,
    ) -> Result<v1::ListPodSandboxStatsResponse, CriError> {
        let f = req.filter.unwrap_or_default();
        let mut stats = Vec::new();
        for pod in self.runtime.list_pods(Some(&self.ns))? {
            if !pod.id.starts_with(&f.id) || !convert::selects(&f.label_selector, &pod.config.labels) {
                continue;
            }
            match self.pod_stats_of(&pod) {
                Ok(s) => stats.push(s),
                Err(e) => tracing::debug!(pod = %pod.id, "no stats: {e}"),
            }
        }
        Ok(v1::ListPodSandboxStatsResponse { stats })
    }
}
