//! Pod start: record → directories → namespaces → CNI ADD, with the cgroup,
//! files and /dev/shm made meanwhile on a second thread → PID-namespace
//! init → hosts → record. Every step knows its undo; a failure undoes the
//! steps before it, on both threads.

use std::sync::mpsc;

use berth_store::ObjectKind;
use rustix::mount::MountFlags;

use super::{
    PodRecord, PodState, Rollback, Runtime, RuntimeError, new_id, now_nanos, remove_dir, write_file,
};
use crate::cgroup::CgroupVersion;
use crate::model::{NsMode, PodConfig};
use crate::namespaces::{self, NsKind};
use crate::network::PodNetRequest;
use crate::pod_init;
use crate::userns;

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

        // The host side (cgroup, files, /dev/shm) needs nothing of the
        // network, so it runs on a thread of its own while the namespaces
        // are pinned and the CNI plugins (most of a pod start) run here.
        let (pinned_tx, pinned_rx) = mpsc::channel();
        let host_pod = pod.clone();
        let (host, net) = std::thread::scope(|s| {
            let host = s.spawn(|| self.prepare_host(&host_pod, pinned_rx));
            let net = self.attach_namespaces(&mut pod, &mut undo, pinned_tx);
            (host.join().expect("pod host-side thread"), net)
        });
        let (host, mut host_undo) = host;
        // Its steps join ours, to be undone or disarmed with them.
        undo.steps.append(&mut host_undo.steps);
        host?;
        net?;

        if pod.config.namespaces.pid == NsMode::Pod {
            // Recorded before the init is started: a crash from here on
            // must still be able to detach the pod (and release its IPs)
            // on removal.
            if pod.network.is_some() {
                self.save_pod(&pod)?;
            }
            // With a user namespace the init joins it too (first), so the
            // PID namespace it makes is the pod's user namespace's.
            let mut kinds = pinned_kinds(&pod.config);
            if pod.config.userns.is_some() {
                kinds.push(NsKind::User);
            }
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
            // On v2 a cgroup with processes cannot have controllers enabled
            // for children (the no-internal-process rule): in the pod cgroup
            // itself it would make the containers' cgroups fail to join
            // (libcontainer: EOPNOTSUPP) or turn them threaded without the
            // memory and io controllers (runc). So on v2 it gets a leaf of
            // its own under the pod, as systemd gives init its init.scope.
            let init_cgroup = match self.cgroups.version() {
                CgroupVersion::V1 => pod.cgroup.clone(),
                CgroupVersion::V2 => {
                    let leaf = format!("{}/init", pod.cgroup);
                    self.cgroups.create(&leaf)?;
                    leaf
                }
            };
            self.cgroups.add_proc(&init_cgroup, pid)?;
        }

        // The one file that needs the pod's IPs.
        self.write_hosts(&pod)?;
        pod.state = PodState::Ready;
        // One write records the network and the state: between the ADD and
        // it there is only the join (the host side is done long before the
        // plugins are) and the hosts file, so a crash leaving an attached
        // pod unrecorded is as unlikely as with a write of its own.
        self.save_pod(&pod)?;
        undo.disarm();
        tracing::info!("pod ready");
        Ok(pod)
    }

    /// Pins the pod's namespaces, then attaches the network namespace to
    /// the network. Tells `pinned` once the pod's directory is the mount
    /// of its own that pinning makes it, which the host side waits for.
    fn attach_namespaces(
        &self,
        pod: &mut PodRecord,
        undo: &mut Rollback,
        pinned: mpsc::Sender<()>,
    ) -> Result<(), RuntimeError> {
        let kinds = pinned_kinds(&pod.config);
        if !kinds.is_empty() {
            let dir = self.pod_state_dir(&pod.id).join("ns");
            let hostname = kinds.contains(&NsKind::Uts).then_some(pod.hostname.as_str());
            match &pod.config.userns {
                None => namespaces::pin(&dir, &kinds, hostname)?,
                Some(u) => namespaces::pin_in_userns(
                    &dir,
                    &kinds,
                    hostname,
                    &userns::map_text(&u.uids),
                    &userns::map_text(&u.gids),
                )?,
            };
            pod.ns_dir = Some(dir.clone());
            undo.push("namespaces", move || {
                let _ = namespaces::unpin(&dir);
            });
        }
        let _ = pinned.send(());
        drop(pinned);

        // Interfaces for a namespace of the pod's own, unless it asked for
        // none (a host-network pod has no namespace to give them to).
        let opts = &pod.config.namespaces;
        let wants_net = opts.network == NsMode::Pod && pod.config.network.as_deref() != Some("none");
        if let (true, Some(net)) = (wants_net, self.network.clone()) {
            let req = self.net_request(pod);
            if let Some(setup) = net.setup(&req)? {
                pod.ips = setup.ips;
                pod.network = Some(setup.network.clone());
                undo.push("network", move || {
                    if let Err(e) = net.teardown(&req, &setup.network) {
                        tracing::warn!("undo network: {e}");
                    }
                });
            }
        }
        Ok(())
    }

    /// The pod's cgroup and, once `pinned` says the namespaces are pinned,
    /// its hostname and resolv.conf files and its /dev/shm. Returns the
    /// undo of what it did, to be run if this or any other step failed.
    fn prepare_host(
        &self,
        pod: &PodRecord,
        pinned: mpsc::Receiver<()>,
    ) -> (Result<(), RuntimeError>, Rollback) {
        let mut undo = Rollback::new();
        let res = self.prepare_host_steps(pod, pinned, &mut undo);
        (res, undo)
    }

    fn prepare_host_steps(
        &self,
        pod: &PodRecord,
        pinned: mpsc::Receiver<()>,
        undo: &mut Rollback,
    ) -> Result<(), RuntimeError> {
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
        // Pinning turns the pod's directory into a mount of its own: a file
        // renamed into place meanwhile could straddle the two mounts
        // (EXDEV), and a mount made before would be copied, not moved.
        // No message means pinning failed and the pod is being undone.
        if pinned.recv().is_err() {
            return Ok(());
        }
        self.write_pod_files(pod)?;
        if pod.config.namespaces.ipc == NsMode::Pod {
            let shm = self.pod_state_dir(&pod.id).join("shm");
            mount_shm(&shm, pod.config.userns.as_ref().map(userns::host_root))?;
            undo.push("shm", move || {
                let _ = crate::rootfs::unmount(&shm);
            });
        }
        Ok(())
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

    /// hostname, resolv.conf and the part of hosts that needs no IP.
    fn write_pod_files(&self, pod: &PodRecord) -> Result<(), RuntimeError> {
        let dir = self.pod_state_dir(&pod.id);
        write_file(&dir.join("hostname"), format!("{}\n", pod.hostname).as_bytes())?;
        write_file(
            &dir.join("hosts"),
            b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
              fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        )?;
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
        write_file(&dir.join("resolv.conf"), resolv.as_bytes())?;
        // Owned by the pod's root, as they are by the host's root without a
        // user namespace (to it the host's root is no one).
        if let Some(u) = &pod.config.userns {
            let (uid, gid) = userns::host_root(u);
            for f in ["hostname", "hosts", "resolv.conf"] {
                let p = dir.join(f);
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(RuntimeError::io("chown", &p))?;
            }
        }
        Ok(())
    }

    /// Completes hosts with the pod's hostname on its IPs (or on 127.0.1.1
    /// without any). Appended, not replaced: creating a file costs more
    /// than writing one on some filesystems, and nothing reads hosts
    /// before the pod is ready.
    fn write_hosts(&self, pod: &PodRecord) -> Result<(), RuntimeError> {
        let mut lines = String::new();
        for ip in &pod.ips {
            lines.push_str(&format!("{ip}\t{}\n", pod.hostname));
        }
        if pod.ips.is_empty() {
            lines.push_str(&format!("127.0.1.1\t{}\n", pod.hostname));
        }
        let path = self.pod_state_dir(&pod.id).join("hosts");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, lines.as_bytes()))
            .map_err(RuntimeError::io("append to", &path))
    }
}

/// The namespaces a pod pins: its own net and IPC when asked, and UTS
/// unless it shares the host's network (Kubernetes gives host-network pods
/// the host's UTS namespace too).
fn pinned_kinds(config: &PodConfig) -> Vec<NsKind> {
    let opts = &config.namespaces;
    let mut kinds = Vec::new();
    if opts.network == NsMode::Pod {
        kinds.push(NsKind::Net);
    }
    if opts.ipc == NsMode::Pod {
        kinds.push(NsKind::Ipc);
    }
    if opts.network != NsMode::Node {
        kinds.push(NsKind::Uts);
    }
    kinds
}

/// The pod's shared /dev/shm, a tmpfs of its own, owned by `owner` (the
/// host ids of the pod's root) when the pod has a user namespace.
fn mount_shm(shm: &std::path::Path, owner: Option<(u32, u32)>) -> Result<(), RuntimeError> {
    let owner = owner.map_or(String::new(), |(u, g)| format!(",uid={u},gid={g}"));
    std::fs::create_dir_all(shm).map_err(RuntimeError::io("create directory", shm))?;
    rustix::mount::mount(
        "shm",
        shm,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        std::ffi::CString::new(format!("mode=1777,size={SHM_SIZE}{owner}"))
            .expect("no NUL")
            .as_c_str(),
    )
    .map_err(|e| RuntimeError::Io {
        what: "mount pod /dev/shm",
        path: shm.to_path_buf(),
        source: e.into(),
    })
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
    if let Some(u) = &c.userns {
        userns::validate(u).map_err(|e| RuntimeError::InvalidArgument(format!("pod {}: {e}", c.name)))?;
        // Namespaces of the host are owned by the host's user namespace:
        // a container in the pod's could not join them (Kubernetes refuses
        // hostUsers: false with any host namespace the same way).
        let opts = &c.namespaces;
        if [opts.network, opts.pid, opts.ipc].contains(&NsMode::Node) {
            return Err(RuntimeError::InvalidArgument(format!(
                "pod {}: a user namespace of the pod's own cannot be combined with the host's network, PID or IPC namespace",
                c.name
            )));
        }
        if !userns::supported() {
            return Err(RuntimeError::InvalidArgument(
                "user namespaces need idmapped mounts, which this kernel lacks (Linux 5.12 or later)".into(),
            ));
        }
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
    use std::path::{Path, PathBuf};

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

    /// A runtime of its own (store, state, cgroup parent), torn down on
    /// drop even when an assertion failed: the pod, its cgroup parent, any
    /// mount left below the temp dir.
    struct TestRuntime {
        rt: Runtime,
        tmp: tempfile::TempDir,
        pod: Option<String>,
    }

    impl TestRuntime {
        fn new() -> TestRuntime {
            let tmp = tempfile::Builder::new()
                .prefix("berth-podrun-")
                .tempdir_in("/tmp")
                .unwrap();
            let store = std::sync::Arc::new(berth_store::Store::open(&tmp.path().join("root")).unwrap());
            let mut opts = super::super::RuntimeOptions::new(
                tmp.path().join("root"),
                tmp.path().join("state"),
                tmp.path().join("no-such-berth"),
            );
            opts.cgroup_parent = format!("/berth-unit-{}", &new_id()[..12]);
            TestRuntime {
                rt: Runtime::new(store, opts).unwrap(),
                tmp,
                pod: None,
            }
        }

        /// The pod's cgroup directory in the pids hierarchy (v1) or the
        /// unified one.
        fn cgroup_dir(&self, cgroup: &str) -> PathBuf {
            let v1 = Path::new("/sys/fs/cgroup/pids");
            let base = if v1.is_dir() {
                v1
            } else {
                Path::new("/sys/fs/cgroup")
            };
            base.join(cgroup.trim_start_matches('/'))
        }

        fn mounts_below_tmp(&self) -> Vec<String> {
            let tmp = format!("{}/", self.tmp.path().display());
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&tmp))
                .map(str::to_string)
                .collect()
        }
    }

    impl Drop for TestRuntime {
        fn drop(&mut self) {
            if let Some(id) = self.pod.take() {
                let _ = self.rt.remove_pod(&id);
            }
            let mut mounts = self.mounts_below_tmp();
            mounts.sort_by(|a, b| b.cmp(a));
            for m in mounts {
                let _ = crate::rootfs::unmount(Path::new(&m));
            }
            let parent = self.rt.opts.cgroup_parent.trim_start_matches('/').to_string();
            for h in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir(h.path().join(&parent));
            }
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&parent));
        }
    }

    /// Needs root. What the second thread makes during a pod start (cgroup,
    /// hostname and resolv.conf, /dev/shm) is there once run_pod returns,
    /// next to the pinned namespaces; stop releases the namespaces only;
    /// remove takes away the rest.
    #[test]
    fn run_pod_leaves_cgroup_files_shm_and_pins_and_remove_takes_them() {
        let mut t = TestRuntime::new();
        let config = PodConfig {
            name: "unit-pod".into(),
            hostname: Some("unit-host".into()),
            namespaces: crate::model::NamespaceOptions::kubernetes(),
            ..Default::default()
        };
        let pod = t.rt.run_pod("default", config).unwrap();
        t.pod = Some(pod.id.clone());
        assert_eq!(pod.state, PodState::Ready);
        assert_eq!(t.rt.get_pod(&pod.id).unwrap().state, PodState::Ready);

        let cgroup = t.cgroup_dir(&pod.cgroup);
        assert!(cgroup.is_dir(), "no cgroup {}", cgroup.display());
        let dir = t.rt.pod_state_dir(&pod.id);
        let shm = rustix::fs::statfs(dir.join("shm")).unwrap();
        assert_eq!(
            shm.f_type as u32,
            libc::TMPFS_MAGIC as u32,
            "/dev/shm is no tmpfs"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("hostname")).unwrap(),
            "unit-host\n"
        );
        assert!(
            std::fs::read_to_string(dir.join("hosts"))
                .unwrap()
                .contains("127.0.1.1\tunit-host\n")
        );
        assert!(dir.join("resolv.conf").is_file());
        let ns_dir = pod.ns_dir.clone().expect("namespaces pinned");
        for kind in [NsKind::Net, NsKind::Ipc, NsKind::Uts] {
            assert!(namespaces::is_pinned(&ns_dir, kind), "{kind:?} not pinned");
        }

        t.rt.stop_pod(&pod.id, std::time::Duration::ZERO).unwrap();
        assert_eq!(t.rt.get_pod(&pod.id).unwrap().state, PodState::NotReady);
        for kind in [NsKind::Net, NsKind::Ipc, NsKind::Uts] {
            assert!(!namespaces::is_pinned(&ns_dir, kind), "{kind:?} still pinned");
        }
        assert!(cgroup.is_dir(), "stop removed the cgroup");

        t.rt.remove_pod(&pod.id).unwrap();
        t.pod = None;
        assert!(!cgroup.exists(), "cgroup {} left", cgroup.display());
        assert!(!dir.exists(), "{} left", dir.display());
        assert_eq!(t.mounts_below_tmp(), Vec::<String>::new());
        assert!(t.rt.get_pod(&pod.id).unwrap_err().is_not_found());
    }
}
