//! ContainerStats, and the CRI stats of a container that the list and pod
//! calls share.

use berth_runtime::runtime::{ContainerRecord, Stats};

use super::container_status::metadata;
use crate::convert::{self, u64v};
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn container_stats(
        &self,
        req: v1::ContainerStatsRequest,
    ) -> Result<v1::ContainerStatsResponse, CriError> {
        let c = self.container(&req.container_id)?;
        Ok(v1::ContainerStatsResponse {
            stats: Some(self.stats_of(&c)?),
        })
    }

    pub(crate) fn stats_of(&self, rec: &ContainerRecord) -> Result<v1::ContainerStats, CriError> {
        let s = self.runtime.container_stats(&rec.id)?;
        let (cpu, memory) = usage(&s);
        Ok(v1::ContainerStats {
            attributes: Some(v1::ContainerAttributes {
                id: rec.id.clone(),
                metadata: Some(metadata(rec)),
                labels: convert::hash(&rec.config.labels),
                annotations: convert::hash(&rec.config.annotations),
            }),
            cpu: Some(cpu),
            memory: Some(memory),
            // The writable layer's usage is not measured yet.
            writable_layer: Some(v1::FilesystemUsage {
                timestamp: s.usage.timestamp_ns as i64,
                fs_id: None,
                used_bytes: u64v(0),
                inodes_used: u64v(0),
            }),
            swap: None,
        })
    }
}

pub(crate) fn usage(s: &Stats) -> (v1::CpuUsage, v1::MemoryUsage) {
    let u = &s.usage;
    let ts = u.timestamp_ns as i64;
    (
        v1::CpuUsage {
            timestamp: ts,
            usage_core_nano_seconds: u64v(u.cpu_usage_ns),
            usage_nano_cores: None,
        },
        v1::MemoryUsage {
            timestamp: ts,
            working_set_bytes: u64v(u.memory_working_set),
            available_bytes: u.memory_limit.map(|l| v1::UInt64Value {
                value: l.saturating_sub(u.memory_working_set),
            }),
            usage_bytes: u64v(u.memory_usage),
            rss_bytes: u64v(u.memory_rss),
            page_faults: u64v(u.page_faults),
            major_page_faults: u64v(u.major_page_faults),
        },
    )
}
