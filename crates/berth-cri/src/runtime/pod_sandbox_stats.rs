//! PodSandboxStats, from the pod's cgroup and its containers'.

use berth_runtime::runtime::PodRecord;

use super::container_stats::usage;
use super::pod_sandbox_status::{annotations, metadata};
use crate::convert;
use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn pod_sandbox_stats(
        &self,
        req: v1::PodSandboxStatsRequest,
    ) -> Result<v1::PodSandboxStatsResponse, CriError> {
        let pod = self.pod(&req.pod_sandbox_id)?;
        Ok(v1::PodSandboxStatsResponse {
            stats: Some(self.pod_stats_of(&pod)?),
        })
    }

    pub(crate) fn pod_stats_of(&self, pod: &PodRecord) -> Result<v1::PodSandboxStats, CriError> {
        let s = self.runtime.pod_stats(&pod.id)?;
        let (mut cpu, memory) = usage(&s);
        cpu.usage_nano_cores = self.nano_cores(&pod.id, &s);
        let containers = self
            .runtime
            .list_containers(None, Some(&pod.id))?
            .iter()
            .filter_map(|c| self.stats_of(c).ok())
            .collect();
        Ok(v1::PodSandboxStats {
            attributes: Some(v1::PodSandboxAttributes {
                id: pod.id.clone(),
                metadata: Some(metadata(pod)),
                labels: convert::hash(&pod.config.labels),
                annotations: annotations(pod),
            }),
            linux: Some(v1::LinuxPodSandboxStats {
                cpu: Some(cpu),
                memory: Some(memory),
                network: self.network_usage(&pod.id, s.usage.timestamp_ns as i64),
                process: Some(v1::ProcessUsage {
                    timestamp: s.usage.timestamp_ns as i64,
                    process_count: convert::u64v(s.usage.pids_current),
                }),
                containers,
            }),
            windows: None,
        })
    }

    /// Counters of the pod's interfaces; the default is the one CNI
    /// plugins name eth0 (kubelet's default), else the first. Failures to
    /// read them leave the field out rather than failing the whole call.
    fn network_usage(&self, pod: &str, timestamp: i64) -> Option<v1::NetworkUsage> {
        let ifaces = match self.runtime.pod_network_stats(pod) {
            Ok(Some(i)) => i,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(pod, error = %e, "network statistics");
                return None;
            }
        };
        let usage = |i: &berth_runtime::runtime::InterfaceStats| v1::NetworkInterfaceUsage {
            name: i.name.clone(),
            rx_bytes: convert::u64v(i.rx_bytes),
            rx_errors: convert::u64v(i.rx_errors),
            tx_bytes: convert::u64v(i.tx_bytes),
            tx_errors: convert::u64v(i.tx_errors),
        };
        let default = ifaces
            .iter()
            .find(|i| i.name == "eth0")
            .or(ifaces.first())
            .map(usage);
        Some(v1::NetworkUsage {
            timestamp,
            default_interface: default,
            interfaces: ifaces.iter().map(usage).collect(),
        })
    }
}
