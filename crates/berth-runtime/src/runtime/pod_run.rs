//! Pod start: record → namespaces → PID-namespace init → cgroup → files.
//! Every step knows its undo; a failure undoes the steps before it.

use berth_store::ObjectKind;
use rustix::mount::MountFlags;

use super::{
    PodRecord, PodState, Rollback, Runtime, RuntimeError, new_id, now_nanos, remove_dir, write_file,
};
use crate::model::{NsMode, PodConfig};
use crate::namespaces::{self, NsKind};
use crate::network::PodNetRequest;
use crate::pod_init;

/// Size of a pod's shared /dev/shm, as containerd and Docker default it.
const SHM_SIZE: u64 = 64 << 20;

impl Runtime {
    /// Creates a pod in `ns` and makes it ready for containers.
    pub fn run_pod(&self, ns: &str, config: PodConfig) -> Result<PodRecord, RuntimeError> {
        validate(&config)?;
        // Refused up front: the pod's containers could never be created.
        self.handler(&config.runtime_handler)?;
        let id = new_id();
        let hostname = config.hostname.clone().unwrap_or_else(|| config.name.clone());
        let cgroup = match &config.cgroup_parent {
            Some(p) if !p.is_empty() => p.clone(),
            _ => format!("{}/{}", self.opts.cgroup_parent.trim_end_matches('/'), id),
        };
        let mut pod = PodRecord {
            id: id.clone(),
            namespace: ns.to_string(),
            config,
            created_at: now_nanos(),
            state: PodState::NotReady,
            hostname,
            cgroup,
            ns_dir: None,
            init_pid: None,
            ips: Vec::new(),
            network: None,
            stopped_at: None,
        };
        let span = tracing::info_span!("run_pod", pod = %id, name = %pod.config.name);
        let _e = span.enter();

        let data = serde_json::to_string(&pod).expect("pod record serializes");
        self.insert(ObjectKind::Pod, (&id, ns, "", &pod.config.name), data, &[])?;
        let mut undo = Rollback::new();
        {
            let store = self.store.clone();
            let id = id.clone();
            undo.push("record", move || {
                let _ = store.delete_object(ObjectKind::Pod, &id);
            });
        }

        let state_dir = self.pod_state_dir(&id);
        let root_dir = self.pod_root_dir(&id);
        for d in [&state_dir, &root_dir.join("logs"), &root_dir.join("volumes")] {
            std::fs::create_dir_all(d).map_err(RuntimeError::io("create directory", d))?;
        }
        {
            let (s, r) = (state_dir.clone(), root_dir.clone());
            undo.push("directories", move || {
                // Pinning made the pod's dir a mount point of its own.
                let _ = crate::rootfs::unmount(&s);
                let _ = remove_dir(&s);
                let _ = remove_dir(&r);
            });
        }

        let opts = &pod.config.namespaces;
        let mut kinds = Vec::new();
        if opts.network == NsMode::Pod {
            kinds.push(NsKind::Net);
        }
        if opts.ipc == NsMode::Pod {
            kinds.push(NsKind::Ipc);
        }
        // Kubernetes gives host-network pods the host's UTS namespace too.
        if opts.network != NsMode::Node {
            kinds.push(NsKind::Uts);
        }
        if !kinds.is_empty() {
            let dir = state_dir.join("ns");
            namespaces::pin(
                &dir,
                &kinds,
                kinds.contains(&NsKind::Uts).then_some(pod.hostname.as_str()),
            )?;
            pod.ns_dir = Some(dir.clone());
            undo.push("namespaces", move || {
                let _ = namespaces::unpin(&dir);
            });
        }

        // Interfaces for a namespace of the pod's own, unless it asked for
        // none (a host-network pod has no namespace to give them to).
        let wants_net = opts.network == NsMode::Pod && pod.config.network.as_deref() != Some("none");
        if let (true, Some(net)) = (wants_net, self.network.clone()) {
            let req = self.net_request(&pod);
            if let Some(setup) = net.setup(&req)? {
                pod.ips = setup.ips;
                pod.network = Some(setup.network.clone());
                // Recorded at once: a crash from here on must still be able to
                // detach the pod (and release its IPs) on removal.
                self.save_pod(&pod)?;
                undo.push("network", move || {
                    if let Err(e) = net.teardown(&req, &setup.network) {
                        tracing::warn!("undo network: {e}");
                    }
                });
            }
        }

        self.cgroups.create(&pod.cgroup)?;
        if pod.config.cgroup_parent.as_deref().is_none_or(str::is_empty) {
            let cg = self.cgroups.clone();
            let path = pod.cgroup.clone();
            undo.push("cgroup", move || {
                let _ = cg.remove(&path);
            });
        }
        if pod.config.resources != Default::default() {
            self.cgroups.apply(&pod.cgroup, &pod.config.resources)?;
        }

        if opts.pid == NsMode::Pod {
            let join: Vec<_> = kinds
                .iter()
                .map(|k| namespaces::path(pod.ns_dir.as_ref().expect("pinned"), *k))
                .collect();
            let pid = pod_init::spawn_pid_init(&self.opts.pod_init.0, &self.opts.pod_init_args(), &join)?;
            pod.init_pid = Some(pid);
            undo.push("pod init", move || {
                let _ = pod_init::stop_pid_init(pid);
            });
            // The init is charged to the pod, not to whoever started it.
            self.cgroups.add_proc(&pod.cgroup, pid)?;
        }

        self.write_pod_files(&pod)?;
        if opts.ipc == NsMode::Pod {
            let shm = state_dir.join("shm");
            std::fs::create_dir_all(&shm).map_err(RuntimeError::io("create directory", &shm))?;
            rustix::mount::mount(
                "shm",
                &shm,
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                std::ffi::CString::new(format!("mode=1777,size={SHM_SIZE}"))
                    .expect("no NUL")
                    .as_c_str(),
            )
            .map_err(|e| RuntimeError::Io {
                what: "mount pod /dev/shm",
                path: shm.clone(),
                source: e.into(),
            })?;
            undo.push("shm", move || {
                let _ = crate::rootfs::unmount(&shm);
            });
        }

        pod.state = PodState::Ready;
        self.save_pod(&pod)?;
        undo.disarm();
        tracing::info!("pod ready");
        Ok(pod)
    }

    pub(crate) fn net_request(&self, pod: &PodRecord) -> PodNetRequest {
        PodNetRequest {
            pod_id: pod.id.clone(),
            pod_name: pod
                .config
                .k8s_name
                .clone()
                .unwrap_or_else(|| pod.config.name.clone()),
            k8s_namespace: pod.config.k8s_namespace.clone(),
            pod_uid: pod.config.uid.clone(),
            netns: pod
                .ns_dir
                .as_ref()
                .map(|d| namespaces::path(d, NsKind::Net))
                .unwrap_or_default(),
            network: pod.config.network.clone(),
            port_mappings: pod.config.port_mappings.clone(),
        }
    }

    fn write_pod_files(&self, pod: &PodRecord) -> Result<(), RuntimeError> {
        let dir = self.pod_state_dir(&pod.id);
        write_file(&dir.join("hostname"), format!("{}\n", pod.hostname).as_bytes())?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        for ip in &pod.ips {
            hosts.push_str(&format!("{ip}\t{}\n", pod.hostname));
        }
        if pod.ips.is_empty() {
            hosts.push_str(&format!("127.0.1.1\t{}\n", pod.hostname));
        }
        write_file(&dir.join("hosts"), hosts.as_bytes())?;
        let resolv = match &pod.config.dns {
            Some(dns) if !dns.servers.is_empty() || !dns.searches.is_empty() || !dns.options.is_empty() => {
                let mut s = String::new();
                if !dns.searches.is_empty() {
                    s.push_str(&format!("search {}\n", dns.searches.join(" ")));
                }
                for srv in &dns.servers {
                    s.push_str(&format!("nameserver {srv}\n"));
                }
                if !dns.options.is_empty() {
                    s.push_str(&format!("options {}\n", dns.options.join(" ")));
                }
                s
            }
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        write_file(&dir.join("resolv.conf"), resolv.as_bytes())
    }
}

fn validate(c: &PodConfig) -> Result<(), RuntimeError> {
    let bad = |what: &str, v: &str| {
        RuntimeError::InvalidArgument(format!(
            "pod {what} {v:?} is not valid: use 1-63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    };
    if !is_dns_label(&c.name) && !is_dns_subdomain(&c.name) {
        return Err(bad("name", &c.name));
    }
    if let Some(h) = &c.hostname
        && !is_dns_label(h)
    {
        return Err(bad("hostname", h));
    }
    if c.namespaces.pid == NsMode::Target {
        return Err(RuntimeError::InvalidArgument(
            "pod namespace option pid=target is only valid for a container".into(),
        ));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("Web"));
        assert!(!is_dns_label("-a"));
        assert!(is_dns_subdomain("a.b"));
        let c = PodConfig {
            name: "Bad_Name".into(),
            ..Default::default()
        };
        let err = validate(&c).unwrap_err();
        assert!(err.to_string().contains("\"Bad_Name\""), "{err}");
    }
}
