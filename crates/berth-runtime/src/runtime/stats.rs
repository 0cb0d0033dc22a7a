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

/// Counters of one network interface, as /proc/net/dev has them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

impl Runtime {
    /// The interfaces of the pod's network namespace other than `lo`;
    /// `None` for a pod on the host's network (its traffic is the node's).
    ///
    /// /proc/thread-self/net shows the namespace of the calling thread, so
    /// a short-lived thread enters the pod's pinned namespace and reads it:
    /// the daemon's own threads never change namespace, and no process has
    /// to live in the pod for this (berth pins namespaces with bind mounts).
    pub fn pod_network_stats(&self, id: &str) -> Result<Option<Vec<InterfaceStats>>, RuntimeError> {
        let pod = self.get_pod(id)?;
        let netns = match (&pod.ns_dir, pod.config.namespaces.network) {
            (_, crate::model::NsMode::Node) | (None, _) => return Ok(None),
            (Some(dir), _) => crate::namespaces::path(dir, crate::namespaces::NsKind::Net),
        };
        let ns = std::fs::File::open(&netns).map_err(RuntimeError::io("open network namespace", &netns))?;
        let text = std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            std::fs::read_to_string("/proc/thread-self/net/dev")
        })
        .join()
        .map_err(|_| {
            RuntimeError::io("read network counters of", &netns)(std::io::Error::other("thread panicked"))
        })?
        .map_err(RuntimeError::io("read network counters of", &netns))?;
        Ok(Some(parse_net_dev(&text)))
    }
}

/// `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets
/// rx_errs rx_drop rx_fifo rx_frame rx_compressed rx_multicast tx_bytes
/// tx_packets tx_errs …` per interface.
pub(crate) fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let n: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            (name != "lo" && n.len() >= 11).then(|| InterfaceStats {
                name: name.to_owned(),
                rx_bytes: n[0],
                rx_errors: n[2],
                tx_bytes: n[8],
                tx_errors: n[10],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_lines_become_counters_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0\n  eth0:    8310      55    1    0    0     0          0         0     2436      24    3    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(text),
            [InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 8310,
                rx_errors: 1,
                tx_bytes: 2436,
                tx_errors: 3,
            }]
        );
    }
}
