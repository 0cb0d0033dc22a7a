//! Pods' interfaces from CNI: the `berth-net` client behind the runtime's
//! `PodNetwork` seam.

use berth_net::{Attachment, Capabilities, Cni, CniConfig, PortMapping};
use berth_runtime::network::{NetSetup, NetworkError, PodNetRequest, PodNetwork};

use crate::config::Config;

/// The interface CNI plugins create in the pod's namespace.
const IFNAME: &str = "eth0";

pub struct CniNetwork {
    cni: Cni,
}

impl CniNetwork {
    pub fn new(config: &Config) -> CniNetwork {
        let c = &config.cni;
        CniNetwork {
            cni: Cni::new(CniConfig {
                conf_dirs: vec![c.conf_dir.clone()],
                bin_dirs: c.bin_dirs.clone(),
                cache_dir: c.cache_dir.clone().unwrap_or_else(|| config.root.join("cni")),
                timeout: std::time::Duration::from_secs(c.timeout),
            }),
        }
    }

    fn attachment(req: &PodNetRequest) -> Attachment {
        // Kubernetes' CNI_ARGS, which plugins such as host-local's and
        // portmap's logs and some IPAMs use to name the pod.
        let mut args = vec![
            ("K8S_POD_NAMESPACE".to_string(), req.k8s_namespace.clone()),
            ("K8S_POD_NAME".to_string(), req.pod_name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".to_string(), req.pod_id.clone()),
        ];
        if !req.pod_uid.is_empty() {
            args.push(("K8S_POD_UID".to_string(), req.pod_uid.clone()));
        }
        Attachment {
            container_id: req.pod_id.clone(),
            netns: req.netns.clone(),
            ifname: IFNAME.to_string(),
            args,
            capabilities: Capabilities {
                port_mappings: req
                    .port_mappings
                    .iter()
                    .map(|p| PortMapping {
                        host_port: p.host_port,
                        container_port: p.container_port,
                        protocol: p.protocol.clone(),
                        host_ip: p.host_ip.clone(),
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }
}

fn error(req: &PodNetRequest, e: impl std::fmt::Display) -> NetworkError {
    NetworkError {
        pod: req.pod_name.clone(),
        message: e.to_string(),
    }
}

impl PodNetwork for CniNetwork {
    fn setup(&self, req: &PodNetRequest) -> Result<Option<NetSetup>, NetworkError> {
        let net = match &req.network {
            Some(name) => self.cni.network(name),
            None => match self.cni.default_network() {
                Err(berth_net::CniError::NoNetwork { dirs }) => {
                    tracing::warn!(
                        pod = %req.pod_name,
                        "no CNI network configured in {dirs:?}: the pod has loopback only"
                    );
                    return Ok(None);
                }
                r => r,
            },
        }
        .map_err(|e| error(req, e))?;
        let result = self
            .cni
            .add(&net, &Self::attachment(req))
            .map_err(|e| error(req, e))?;
        Ok(Some(NetSetup {
            network: net.name.clone(),
            ips: result.pod_ips().iter().map(|ip| ip.to_string()).collect(),
        }))
    }

    fn teardown(&self, req: &PodNetRequest, network: &str) -> Result<(), NetworkError> {
        self.cni
            .del(&Self::attachment(req).key(network))
            .map_err(|e| error(req, e))
    }
}
