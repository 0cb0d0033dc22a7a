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
        let (mut cpu, memory) = usage(&s);
        cpu.usage_nano_cores = self.nano_cores(&rec.id, &s);
        let upper = self.runtime.writable_layer(&rec.id);
        let (bytes, inodes) = crate::image::image_fs_info::usage(&upper);
        Ok(v1::ContainerStats {
            attributes: Some(v1::ContainerAttributes {
                id: rec.id.clone(),
                metadata: Some(metadata(rec)),
                labels: convert::hash(&rec.config.labels),
                annotations: convert::hash(&rec.config.annotations),
            }),
            cpu: Some(cpu),
            memory: Some(memory),
            writable_layer: Some(v1::FilesystemUsage {
                timestamp: s.usage.timestamp_ns as i64,
                fs_id: Some(v1::FilesystemIdentifier {
                    mountpoint: upper.display().to_string(),
                }),
                used_bytes: u64v(bytes),
                inodes_used: u64v(inodes),
            }),
            swap: None,
        })
    }
}

impl CriService {
    /// CPU use in nanocores since the previous sample of `key` (a container
    /// or pod id), as kubelet's summary API wants it; `None` on the first
    /// sample. Samples live in memory, as containerd keeps them.
    pub(crate) fn nano_cores(&self, key: &str, s: &Stats) -> Option<v1::UInt64Value> {
        let now = (s.usage.timestamp_ns, s.usage.cpu_usage_ns);
        let mut samples = self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner());
        let prev = samples.insert(key.to_string(), now)?;
        let (dt, dcpu) = (now.0.checked_sub(prev.0)?, now.1.checked_sub(prev.1)?);
        (dt > 0).then(|| v1::UInt64Value {
            value: (dcpu as u128 * 1_000_000_000 / dt as u128) as u64,
        })
    }
}

impl CriService {
    pub(crate) fn forget_samples(&self, key: &str) {
        self.cpu_samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
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
