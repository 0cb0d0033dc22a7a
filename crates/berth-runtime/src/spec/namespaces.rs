//! Which namespaces a container creates, joins or shares with the host.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};

use super::{HostInfo, SpecError, SpecInput};
use crate::model::NsMode;

/// The effective mode of each namespace kind the pod model controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes {
    pub net: NsMode,
    pub pid: NsMode,
    pub ipc: NsMode,
    /// Follows the network: a host-network pod has the host's hostname.
    pub uts: NsMode,
}

pub struct NsPlan {
    pub namespaces: Vec<LinuxNamespace>,
    pub hostname: Option<String>,
    pub modes: Modes,
    /// The pod's user namespace mappings (uid, gid), which runc wants in
    /// the spec even when it joins the namespace by path.
    pub id_mappings: Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>,
}

pub fn plan(input: &SpecInput, host: &HostInfo) -> Result<NsPlan, SpecError> {
    let opts = input
        .container
        .security
        .namespaces
        .as_ref()
        .unwrap_or(&input.pod.namespaces);
    let uts = match opts.network {
        NsMode::Node => NsMode::Node,
        NsMode::Pod => NsMode::Pod,
        NsMode::Container | NsMode::Target => NsMode::Container,
    };
    let modes = Modes {
        net: opts.network,
        pid: opts.pid,
        ipc: opts.ipc,
        uts,
    };
    let paths = input.pod_namespaces;
    let name = &input.container.name;
    let mut namespaces = Vec::new();
    // The pod's user namespace, joined before the others: they are all
    // owned by it (or, the container's own, created inside it).
    let id_mappings = match &input.pod.userns {
        None => None,
        Some(u) => {
            let path = paths
                .user
                .clone()
                .ok_or_else(|| SpecError::MissingNamespacePath {
                    container: name.to_string(),
                    kind: "user",
                })?;
            namespaces.push(joined(LinuxNamespaceType::User, path));
            Some((crate::userns::to_oci(&u.uids), crate::userns::to_oci(&u.gids)))
        }
    };
    namespaces.push(new(LinuxNamespaceType::Mount));
    for (typ, kind, mode, path) in [
        (LinuxNamespaceType::Network, "network", modes.net, &paths.net),
        (LinuxNamespaceType::Ipc, "ipc", modes.ipc, &paths.ipc),
        (LinuxNamespaceType::Uts, "uts", modes.uts, &paths.uts),
        (LinuxNamespaceType::Pid, "pid", modes.pid, &paths.pid),
    ] {
        if let Some(ns) = entry(typ, kind, mode, path, &paths.target_pid, name)? {
            namespaces.push(ns);
        }
    }
    if host.cgroup_v2 {
        namespaces.push(new(LinuxNamespaceType::Cgroup));
    }
    let hostname = (modes.uts != NsMode::Node).then(|| {
        input
            .pod
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| input.pod.name.clone())
    });
    Ok(NsPlan {
        namespaces,
        hostname,
        modes,
        id_mappings,
    })
}

fn new(typ: LinuxNamespaceType) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns
}

fn joined(typ: LinuxNamespaceType, path: PathBuf) -> LinuxNamespace {
    let mut ns = new(typ);
    ns.set_path(Some(path));
    ns
}

fn entry(
    typ: LinuxNamespaceType,
    kind: &'static str,
    mode: NsMode,
    pod_path: &Option<PathBuf>,
    target_path: &Option<PathBuf>,
    container: &str,
) -> Result<Option<LinuxNamespace>, SpecError> {
    match mode {
        NsMode::Node => Ok(None),
        NsMode::Container => Ok(Some(new(typ))),
        NsMode::Pod => match pod_path {
            Some(p) => Ok(Some(joined(typ, p.clone()))),
            None => Err(SpecError::MissingNamespacePath {
                container: container.to_string(),
                kind,
            }),
        },
        NsMode::Target => match target_path {
            Some(p) if typ == LinuxNamespaceType::Pid => Ok(Some(joined(typ, p.clone()))),
            // Target applies to PID only; elsewhere it means the container's own.
            _ if typ != LinuxNamespaceType::Pid => Ok(Some(new(typ))),
            _ => Err(SpecError::MissingTargetNamespace {
                container: container.to_string(),
            }),
        },
    }
}
