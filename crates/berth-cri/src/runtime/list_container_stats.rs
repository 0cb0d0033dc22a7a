//! ListContainerStats: stats of the containers that match the filter and
//! still have a cgroup to read.

use crate::convert;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn list_container_stats(
        &self,
        req: v1::ListContainerStatsRequest,
    ) -> Result<v1::ListContainerStatsResponse, CriError> {
        let f = req.filter.unwrap_or_default();
        let mut stats = Vec::new();
        for rec in self.runtime.list_containers(Some(&self.ns), None)? {
            if !rec.id.starts_with(&f.id)
                || !rec.pod_id.starts_with(&f.pod_sandbox_id)
                || !convert::selects(&f.label_selector, &rec.config.labels)
            {
                continue;
            }
            match self.stats_of(&rec) {
                Ok(s) => stats.push(s),
                // A container that exited may have lost its cgroup already.
                Err(e) => tracing::debug!(container = %rec.id, "no stats: {e}"),
            }
        }
        Ok(v1::ListContainerStatsResponse { stats })
    }
}
