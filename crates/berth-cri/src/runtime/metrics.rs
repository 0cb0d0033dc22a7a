//! ListMetricDescriptors and ListPodSandboxMetrics: the cAdvisor metrics
//! kubelet serves on /metrics/cadvisor when it takes container statistics
//! from the runtime (`PodAndContainerStatsFromCRI`), under cAdvisor's
//! names and labels, so dashboards and alerts written for cAdvisor keep
//! working.
//!
//! The CRI carries every value as an unsigned integer: `*_seconds_total`
//! counters are whole seconds (the nanosecond counters are in
//! ContainerStats), byte and count values are exact.

use berth_runtime::runtime::{ContainerRecord, PodRecord, Stats};

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

/// Labels of every metric, in order (cAdvisor's for containers).
const LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

struct Descriptor {
    name: &'static str,
    help: &'static str,
    counter: bool,
    /// Per network interface: one more label, `interface`.
    per_interface: bool,
}

const fn d(name: &'static str, help: &'static str, counter: bool, per_interface: bool) -> Descriptor {
    Descriptor {
        name,
        help,
        counter,
        per_interface,
    }
}

const CPU_TOTAL: &str = "container_cpu_usage_seconds_total";
const CPU_USER: &str = "container_cpu_user_seconds_total";
const CPU_SYSTEM: &str = "container_cpu_system_seconds_total";
const MEM_USAGE: &str = "container_memory_usage_bytes";
const MEM_WORKING_SET: &str = "container_memory_working_set_bytes";
const MEM_RSS: &str = "container_memory_rss";
const MEM_LIMIT: &str = "container_spec_memory_limit_bytes";
const PROCESSES: &str = "container_processes";
const OOM_EVENTS: &str = "container_oom_events_total";
const LAST_SEEN: &str = "container_last_seen";
const NET_RX: &str = "container_network_receive_bytes_total";
const NET_TX: &str = "container_network_transmit_bytes_total";
const NET_RX_ERR: &str = "container_network_receive_errors_total";
const NET_TX_ERR: &str = "container_network_transmit_errors_total";

const DESCRIPTORS: &[Descriptor] = &[
    d(CPU_TOTAL, "Cumulative cpu time consumed in seconds.", true, false),
    d(
        CPU_USER,
        "Cumulative user cpu time consumed in seconds.",
        true,
        false,
    ),
    d(
        CPU_SYSTEM,
        "Cumulative system cpu time consumed in seconds.",
        true,
        false,
    ),
    d(
        MEM_USAGE,
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        false,
        false,
    ),
    d(MEM_WORKING_SET, "Current working set in bytes.", false, false),
    d(MEM_RSS, "Size of RSS in bytes.", false, false),
    d(MEM_LIMIT, "Memory limit for the container.", false, false),
    d(
        PROCESSES,
        "Number of processes running inside the container.",
        false,
        false,
    ),
    d(
        OOM_EVENTS,
        "Count of out of memory events observed for the container.",
        true,
        false,
    ),
    d(
        LAST_SEEN,
        "Last time a container was seen by the exporter.",
        false,
        false,
    ),
    d(NET_RX, "Cumulative count of bytes received.", true, true),
    d(NET_TX, "Cumulative count of bytes transmitted.", true, true),
    d(
        NET_RX_ERR,
        "Cumulative count of errors encountered while receiving.",
        true,
        true,
    ),
    d(
        NET_TX_ERR,
        "Cumulative count of errors encountered while transmitting.",
        true,
        true,
    ),
];

impl CriService {
    pub(crate) fn list_metric_descriptors(
        &self,
        _: v1::ListMetricDescriptorsRequest,
    ) -> Result<v1::ListMetricDescriptorsResponse, CriError> {
        let descriptors = DESCRIPTORS
            .iter()
            .map(|d| {
                let mut label_keys: Vec<String> = LABELS.iter().map(|l| l.to_string()).collect();
                if d.per_interface {
                    label_keys.push("interface".into());
                }
                v1::MetricDescriptor {
                    name: d.name.into(),
                    help: d.help.into(),
                    label_keys,
                }
            })
            .collect();
        Ok(v1::ListMetricDescriptorsResponse { descriptors })
    }

    pub(crate) fn list_pod_sandbox_metrics(
        &self,
        _: v1::ListPodSandboxMetricsRequest,
    ) -> Result<v1::ListPodSandboxMetricsResponse, CriError> {
        let mut pod_metrics = Vec::new();
        for pod in self.runtime.list_pods(Some(&self.ns))? {
            let containers = self.runtime.list_containers(None, Some(&pod.id))?;
            let mut out = v1::PodSandboxMetrics {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            };
            // Pod-level series (the network): cAdvisor puts them on the
            // pod's sandbox, with an empty container label.
            if let Ok(Some(ifaces)) = self.runtime.pod_network_stats(&pod.id) {
                let now = now_ns();
                let labels = labels(&pod, None);
                for i in ifaces {
                    let mut with_iface = labels.clone();
                    with_iface.push(i.name.clone());
                    for (name, value) in [
                        (NET_RX, i.rx_bytes),
                        (NET_TX, i.tx_bytes),
                        (NET_RX_ERR, i.rx_errors),
                        (NET_TX_ERR, i.tx_errors),
                    ] {
                        out.metrics.push(metric(name, now, &with_iface, value));
                    }
                }
            }
            for c in containers {
                // An exited container's cgroup is gone: nothing to report.
                let Ok(stats) = self.runtime.container_stats(&c.id) else {
                    continue;
                };
                out.container_metrics.push(v1::ContainerMetrics {
                    container_id: c.id.clone(),
                    metrics: container_metrics(&pod, &c, &stats),
                });
            }
            pod_metrics.push(out);
        }
        Ok(v1::ListPodSandboxMetricsResponse { pod_metrics })
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Values for [`LABELS`].
fn labels(pod: &PodRecord, c: Option<&ContainerRecord>) -> Vec<String> {
    let k8s_namespace = pod.config.k8s_namespace.clone();
    let pod_name = pod
        .config
        .k8s_name
        .clone()
        .unwrap_or_else(|| pod.config.name.clone());
    match c {
        Some(c) => vec![
            crate::names::container_cri_name(&c.config.name, c.config.attempt).to_string(),
            c.cgroup.clone(),
            c.image_name.clone(),
            c.id.clone(),
            k8s_namespace,
            pod_name,
        ],
        None => vec![
            String::new(),
            pod.cgroup.clone(),
            String::new(),
            pod.id.clone(),
            k8s_namespace,
            pod_name,
        ],
    }
}

fn metric(name: &str, timestamp: i64, labels: &[String], value: u64) -> v1::Metric {
    let counter = DESCRIPTORS.iter().any(|d| d.name == name && d.counter);
    v1::Metric {
        name: name.into(),
        timestamp,
        metric_type: if counter {
            v1::MetricType::Counter
        } else {
            v1::MetricType::Gauge
        } as i32,
        label_values: labels.to_vec(),
        value: Some(v1::UInt64Value { value }),
    }
}

fn container_metrics(pod: &PodRecord, c: &ContainerRecord, s: &Stats) -> Vec<v1::Metric> {
    const NS: u64 = 1_000_000_000;
    let u = &s.usage;
    let ts = u.timestamp_ns as i64;
    let labels = labels(pod, Some(c));
    let mut out = vec![
        metric(CPU_TOTAL, ts, &labels, u.cpu_usage_ns / NS),
        metric(CPU_USER, ts, &labels, u.cpu_user_ns / NS),
        metric(CPU_SYSTEM, ts, &labels, u.cpu_system_ns / NS),
        metric(MEM_USAGE, ts, &labels, u.memory_usage),
        metric(MEM_WORKING_SET, ts, &labels, u.memory_working_set),
        metric(MEM_RSS, ts, &labels, u.memory_rss),
        metric(PROCESSES, ts, &labels, u.pids_current),
        metric(OOM_EVENTS, ts, &labels, u.oom_kills),
        metric(LAST_SEEN, ts, &labels, u.timestamp_ns / NS),
    ];
    // cAdvisor reports 0 for "no limit".
    out.push(metric(MEM_LIMIT, ts, &labels, u.memory_limit.unwrap_or(0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_descriptor_has_a_unique_name_and_the_cadvisor_labels() {
        let mut names: Vec<_> = DESCRIPTORS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DESCRIPTORS.len());
        assert!(names.iter().all(|n| n.starts_with("container_")));
        assert!(
            DESCRIPTORS
                .iter()
                .filter(|d| d.per_interface)
                .all(|d| d.name.contains("network"))
        );
    }
}
