//! Container create: record (protecting the image's snapshots) → rootfs
//! overlay → OCI spec → the monitor runs the handler's `create`.

use std::path::PathBuf;

use berth_store::{ObjectKind, Resource};

use super::container_restore::CheckpointArchive;
use super::{
    ContainerRecord, PodRecord, PodState, Rollback, Runtime, RuntimeError, new_id, now_nanos, remove_dir,
    write_file,
};
use crate::model::{ContainerConfig, ImageRun, NsMode};
use crate::monitor::{self, MonitorConfig};
use crate::namespaces::{self, NsKind};
use crate::rootfs;
use crate::spec::{self, PodFiles, PodNamespacePaths, SpecInput};
use crate::userns;

/// An image as the runtime needs it, resolved by the caller from the image
/// store.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// The name it was found under.
    pub name: String,
    /// Manifest digest.
    pub id: String,
    /// Config digest: the image's id in the CRI (PullImage's image_ref).
    pub config_digest: String,
    /// Snapshot keys of its layers (their diff_ids), bottom first.
    pub layers: Vec<String>,
    pub run: ImageRun,
    /// Blobs the container keeps alive (manifest, config).
    pub blobs: Vec<berth_api::Digest>,
}

/// A pod's idmapper and the host (uid, gid) of its root.
type PodIdmap = (userns::Idmapper, (u32, u32));

impl Runtime {
    /// Creates a container in a ready pod; it is left in state created.
    pub fn create_container(
        &self,
        pod_id: &str,
        config: ContainerConfig,
        image: &ResolvedImage,
    ) -> Result<ContainerRecord, RuntimeError> {
        self.create_container_with(pod_id, config, image, None)
    }

    /// [`Runtime::create_container`], or with `restore` the container that
    /// start restores from a checkpoint (see `container_restore`).
    pub(super) fn create_container_with(
        &self,
        pod_id: &str,
        config: ContainerConfig,
        image: &ResolvedImage,
        restore: Option<&CheckpointArchive>,
    ) -> Result<ContainerRecord, RuntimeError> {
        let pod = self.get_pod(pod_id)?;
        if pod.state != PodState::Ready {
            return Err(RuntimeError::FailedPrecondition(format!(
                "pod {} ({}) is not ready: it was stopped",
                pod.config.name, pod.id
            )));
        }
        if config.name.is_empty() {
            return Err(RuntimeError::InvalidArgument("container name is empty".into()));
        }
        let id = new_id();
        let span =
            tracing::info_span!("create_container", pod = %pod.id, container = %id, name = %config.name);
        let _e = span.enter();
        let handler = self.handler(&pod.config.runtime_handler)?.clone();
        // kubelet asks for rro only where Status said the handler has it;
        // anyone else gets a clear refusal rather than the handler's error.
        if let Some(m) = config.mounts.iter().find(|m| m.recursive_readonly)
            && !crate::features::of(&handler).recursive_readonly
        {
            return Err(RuntimeError::InvalidArgument(format!(
                "mount {}: runtime handler {} cannot make mounts recursively read-only",
                m.destination, handler.name
            )));
        }
        let log_path = match &config.log_path {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => pod
                .config
                .log_directory
                .clone()
                .unwrap_or_else(|| self.pod_log_dir(&pod.id))
                .join(p),
            None => self
                .pod_log_dir(&pod.id)
                .join(format!("{}_{}.log", config.name, config.attempt)),
        };
        let rec = ContainerRecord {
            id: id.clone(),
            pod_id: pod.id.clone(),
            namespace: pod.namespace.clone(),
            image_name: image.name.clone(),
            image_id: image.id.clone(),
            image_config: image.config_digest.clone(),
            image_run: image.run.clone(),
            handler: handler.name.clone(),
            cgroup: format!("{}/{}", pod.cgroup.trim_end_matches('/'), id),
            log_path,
            created_at: now_nanos(),
            started_at: None,
            pid: None,
            monitor_pid: None,
            error: None,
            user: None,
            restore_images: restore.map(|_| self.restore_images_dir(&id)),
            config,
        };

        // Recording first protects the layers from a concurrent gc before
        // their directories are looked up.
        let mut resources: Vec<Resource> = image
            .layers
            .iter()
            .map(|k| Resource::Snapshot(k.clone()))
            .collect();
        resources.extend(image.blobs.iter().cloned().map(Resource::Blob));
        let data = serde_json::to_string(&rec).expect("container record serializes");
        self.insert(
            ObjectKind::Container,
            (&id, &pod.namespace, &pod.id, &rec.config.name),
            data,
            &resources,
        )?;
        let mut undo = Rollback::new();
        {
            let store = self.store.clone();
            let id = id.clone();
            undo.push("record", move || {
                let _ = store.delete_object(ObjectKind::Container, &id);
            });
        }

        let mut layers = Vec::with_capacity(image.layers.len());
        for key in &image.layers {
            let snap = self.store.snapshot(key)?.ok_or_else(|| {
                RuntimeError::FailedPrecondition(format!(
                    "image {}: layer {key} is not unpacked in the store (pull the image again)",
                    image.name
                ))
            })?;
            layers.push(snap.path);
        }
        let state_dir = self.ctr_state_dir(&id);
        let root_dir = self.ctr_root_dir(&id);
        let rootfs_dir = state_dir.join("rootfs");
        std::fs::create_dir_all(&state_dir).map_err(RuntimeError::io("create directory", &state_dir))?;
        {
            let (s, r) = (state_dir.clone(), root_dir.clone());
            undo.push("directories", move || {
                let _ = remove_dir(&s);
                let _ = remove_dir(&r);
            });
        }
        let idmap = self.pod_idmap(&pod)?;
        // Only the pod's own mappings: a mount idmapped otherwise would
        // need a user namespace of its own.
        if let Some((dest, _)) = rec
            .config
            .idmapped_mounts
            .iter()
            .find(|(_, m)| Some(*m) != pod.config.userns.as_ref())
        {
            return Err(RuntimeError::InvalidArgument(format!(
                "mount {dest}: idmap mappings other than the pod's user namespace's are not supported"
            )));
        }
        match &idmap {
            None => rootfs::mount(
                &layers,
                &root_dir.join("upper"),
                &root_dir.join("work"),
                &rootfs_dir,
            )?,
            Some((mapper, root)) => rootfs::mount_idmapped(
                &layers,
                &root_dir.join("upper"),
                &root_dir.join("work"),
                &rootfs_dir,
                &state_dir.join("lower"),
                mapper,
                *root,
            )?,
        }
        {
            let r = rootfs_dir.clone();
            undo.push("rootfs", move || {
                let _ = rootfs::unmount(&r);
            });
        }

        // In a user namespace the container's bind mounts are of idmapped
        // mounts of their sources, made here (see crate::userns).
        let idmapped;
        let spec_rec = match &idmap {
            None => &rec,
            Some((mapper, _)) => {
                let dirs = [&rootfs_dir, &self.pod_state_dir(&pod.id).join("ns").join("user")];
                for p in dirs {
                    userns::ensure_searchable(p, &self.opts.state).map_err(RuntimeError::io("prepare", p))?;
                }
                let mut config = rec.config.clone();
                self.idmap_volumes(&mut config, &state_dir.join("idmap"), mapper, &mut undo)?;
                idmapped = ContainerRecord {
                    config,
                    ..rec.clone()
                };
                &idmapped
            }
        };
        let spec = self.container_spec(&pod, spec_rec, &rootfs_dir)?;
        let user = spec.process().as_ref().map(|p| {
            let u = p.user();
            super::ProcessUser {
                uid: u.uid(),
                gid: u.gid(),
                additional_gids: u.additional_gids().clone().unwrap_or_default(),
            }
        });
        let bundle_config = state_dir.join("config.json");
        write_file(
            &bundle_config,
            &serde_json::to_vec(&spec).expect("OCI spec serializes"),
        )?;
        if let Some(parent) = rec.log_path.parent() {
            std::fs::create_dir_all(parent).map_err(RuntimeError::io("create log directory", parent))?;
        }
        if let Some(archive) = restore {
            self.unpack_checkpoint(&id, archive, &rootfs_dir)?;
        }

        let mcfg = MonitorConfig {
            id: id.clone(),
            bundle: state_dir.clone(),
            runtime: handler.argv(),
            log_path: rec.log_path.clone(),
            exit_file: self.exit_file(&id),
            socket: self.attach_socket(&id),
            pid_file: state_dir.join("init.pid"),
            tty: rec.config.tty,
            stdin: rec.config.stdin,
            stdin_once: rec.config.stdin_once,
            oom_files: self.cgroups.oom_kill_files(&rec.cgroup),
            restore: rec.restore_images.clone(),
        };
        // The monitor creates the log file before the runtime's create.
        // kubelet numbers a container's next attempt by the files in its log
        // directory, so one left by a failed create would count as a run
        // (containerd opens the log only at start).
        if !rec.log_path.exists() {
            let log = rec.log_path.clone();
            undo.push("log file", move || {
                let _ = std::fs::remove_file(&log);
            });
        }
        if let Some(archive) = restore {
            // The monitor and the handler's restore wait for start.
            monitor::write_config(&state_dir, &mcfg)?;
            let mut rec = rec;
            rec.user = user;
            self.save_container(&rec)?;
            undo.disarm();
            tracing::info!(archive = %archive.path.display(), "container created from a checkpoint");
            return Ok(rec);
        }
        // The runtime moves the container's init into its cgroup a few ms
        // from now; let the kernel's migration lock get ready meanwhile.
        let _ = self.cgroups.prime_migration();
        let started = monitor::spawn(&self.opts.monitor.0, &self.opts.monitor_args(), &state_dir, &mcfg)?;
        {
            let h = handler.clone();
            let id = id.clone();
            undo.push("runtime container", move || {
                let _ = h.delete(&id, true);
            });
        }
        let mut rec = rec;
        rec.user = user;
        rec.pid = Some(started.container_pid);
        rec.monitor_pid = Some(started.monitor_pid);
        self.save_container(&rec)?;
        undo.disarm();
        tracing::info!(pid = started.container_pid, "container created");
        Ok(rec)
    }

    /// The idmapper of the pod's user namespace and the host ids of its
    /// root, if it has one.
    fn pod_idmap(&self, pod: &PodRecord) -> Result<Option<PodIdmap>, RuntimeError> {
        let Some(u) = &pod.config.userns else {
            return Ok(None);
        };
        let pin = pod
            .ns_dir
            .as_ref()
            .map(|d| namespaces::path(d, NsKind::User))
            .ok_or_else(|| {
                RuntimeError::FailedPrecondition(format!("pod {}: its user namespace is not pinned", pod.id))
            })?;
        let mapper = userns::Idmapper::open(&pin).map_err(RuntimeError::io("open", &pin))?;
        Ok(Some((mapper, userns::host_root(u))))
    }

    /// Replaces the source of each bind mount the request wants idmapped
    /// with an idmapped mount of it under `dir`, so the pod's root owns
    /// inside what the host's root owns (emptyDir, hostPath). Other bind
    /// mounts stay as they are: to the pod, their host-root files belong
    /// to no one. A source whose filesystem cannot be idmapped (devtmpfs,
    /// procfs…) is bound as it is.
    fn idmap_volumes(
        &self,
        config: &mut crate::model::ContainerConfig,
        dir: &std::path::Path,
        mapper: &userns::Idmapper,
        undo: &mut Rollback,
    ) -> Result<(), RuntimeError> {
        let wanted = std::mem::take(&mut config.idmapped_mounts);
        for (i, m) in config.mounts.iter_mut().enumerate() {
            let crate::model::MountKind::Bind(src) = &mut m.kind else {
                continue;
            };
            if !wanted.contains_key(&m.destination) {
                continue;
            }
            let meta = std::fs::metadata(&*src).map_err(RuntimeError::io("mount source", src))?;
            std::fs::create_dir_all(dir).map_err(RuntimeError::io("create directory", dir))?;
            let at = dir.join(i.to_string());
            if meta.is_dir() {
                std::fs::create_dir(&at).map_err(RuntimeError::io("create directory", &at))?;
            } else {
                write_file(&at, b"")?;
            }
            match mapper.bind(src, &at) {
                Ok(()) => {
                    let a = at.clone();
                    undo.push("idmapped volume", move || {
                        let _ = rootfs::unmount(&a);
                    });
                    *src = at;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::warn!(source = %src.display(), "mount source cannot be idmapped, bound as it is: {e}");
                }
                Err(e) => return Err(RuntimeError::io("idmapped mount of", src)(e)),
            }
        }
        Ok(())
    }

    /// The OCI spec of a container of `pod`, its rootfs mounted at `rootfs`.
    fn container_spec(
        &self,
        pod: &PodRecord,
        rec: &ContainerRecord,
        rootfs: &std::path::Path,
    ) -> Result<oci_spec::runtime::Spec, RuntimeError> {
        let ns_dir = pod.ns_dir.as_ref();
        let pinned = |k: NsKind| ns_dir.map(|d| namespaces::path(d, k)).filter(|p| p.exists());
        let target_pid = match rec.config.security.namespaces.as_ref() {
            Some(o) if o.pid == NsMode::Target => {
                let tid = o.target_id.as_deref().unwrap_or_default();
                let target = self.get_container(tid).map_err(|_| {
                    RuntimeError::InvalidArgument(format!(
                        "container {}: pid namespace target {tid:?} is not a container",
                        rec.config.name
                    ))
                })?;
                let pid = target.pid.ok_or_else(|| {
                    RuntimeError::FailedPrecondition(format!("target container {tid} has no process"))
                })?;
                Some(PathBuf::from(format!("/proc/{pid}/ns/pid")))
            }
            _ => None,
        };
        let paths = PodNamespacePaths {
            net: pinned(NsKind::Net),
            ipc: pinned(NsKind::Ipc),
            uts: pinned(NsKind::Uts),
            pid: pod.init_pid.map(|p| PathBuf::from(format!("/proc/{p}/ns/pid"))),
            target_pid,
            user: pinned(NsKind::User),
        };
        let dir = self.pod_state_dir(&pod.id);
        let shm = dir.join("shm");
        let files = PodFiles {
            hostname: Some(dir.join("hostname")),
            hosts: Some(dir.join("hosts")),
            resolv_conf: Some(dir.join("resolv.conf")),
            shm: (pod.config.namespaces.ipc == NsMode::Pod && shm.exists()).then_some(shm),
        };
        let generated = spec::generate(&SpecInput {
            id: &rec.id,
            pod: &pod.config,
            container: &rec.config,
            image: &rec.image_run,
            rootfs,
            cgroups_path: &rec.cgroup,
            pod_namespaces: &paths,
            pod_files: &files,
        })?;
        for w in &generated.warnings {
            tracing::warn!(container = %rec.id, "{w}");
        }
        Ok(generated.spec)
    }
}
