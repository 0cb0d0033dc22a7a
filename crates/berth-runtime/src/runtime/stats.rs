//! Resource usage of containers and pods, read from their cgroups.

use serde::Serialize;

use super::{Runtime, RuntimeError};
use crate::cgroup::CgroupStats;

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub id: String,
    pub name: String,
    pub cgroup: String,
    #[serde(flatten)]
    pub usage: CgroupStats,
}

impl Runtime {
    pub fn container_stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        let rec = self.get_container(id)?;
        Ok(Stats {
            usage: self.cgroups.stats(&rec.cgroup)?,
            id: rec.id,
            name: rec.config.name,
            cgroup: rec.cgroup,
        })
    }

    pub fn pod_stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        let pod = self.get_pod(id)?;
        Ok(Stats {
            usage: self.cgroups.stats(&pod.cgroup)?,
            id: pod.id,
            name: pod.config.name,
            cgroup: pod.cgroup,
        })
    }
}
