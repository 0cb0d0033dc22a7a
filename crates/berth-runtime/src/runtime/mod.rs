//! The runtime: pods and containers on this host, from records in the store
//! to namespaces, cgroups, root filesystems and monitors. The CLI and the CRI
//! server both drive pods through it; one file per operation.
//!
//! ```text
//! <root>/pods/<id>/logs/         container logs of CLI pods
//! <root>/pods/<id>/volumes/      emptyDir volumes
//! <root>/containers/<id>/upper   the container's writable layer (and work/)
//! <state>/pods/<id>/ns/{net,ipc,uts}   pinned namespaces
//! <state>/pods/<id>/{hostname,hosts,resolv.conf,shm/}
//! <state>/containers/<id>/       OCI bundle (config.json, rootfs/), the monitor's files
//! ```

mod container_checkpoint;
mod container_create;
mod container_remove;
mod container_restore;
mod container_start;
mod container_status;
mod container_stop;
mod exec;
mod pod_remove;
mod pod_run;
mod pod_stop;
mod records;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_api::Namespace;
use berth_store::{ObjectKind, ObjectRow, Store, StoreError};

use crate::cgroup::{CgroupError, Cgroups};
use crate::handler::{HandlerError, OciHandler};
use crate::monitor::MonitorError;
use crate::namespaces::NsError;
use crate::network::{NetworkError, PodNetwork};
use crate::rootfs::RootfsError;
use crate::spec::SpecError;

pub use container_create::ResolvedImage;
pub use container_restore::CheckpointArchive;
pub use exec::ExecRequest;
pub use records::{ContainerRecord, ContainerState, ContainerStatus, PodRecord, PodState, ProcessUser};
pub use stats::{InterfaceStats, Stats};

#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Persistent state (the store's root).
    pub root: PathBuf,
    /// Runtime state (tmpfs: /run/berth).
    pub state: PathBuf,
    /// The berth binary (the embedded handler is `exe oci`).
    pub exe: PathBuf,
    /// The command of a container's monitor (DIR is appended): the small
    /// static `berth-monitor` next to `exe` when installed, else `exe monitor`.
    pub monitor: (PathBuf, Vec<String>),
    /// The command of a pod's PID-namespace init.
    pub pod_init: (PathBuf, Vec<String>),
    /// Runtime handlers by name.
    pub handlers: BTreeMap<String, OciHandler>,
    pub default_handler: String,
    /// Parent of berth's pod cgroups.
    pub cgroup_parent: String,
}

impl RuntimeOptions {
    /// The defaults for a root and state dir: the embedded handler as
    /// `berth` (the small `berth-oci` next to `exe` when installed, else
    /// `exe oci`), runc and crun when installed.
    pub fn new(root: PathBuf, state: PathBuf, exe: PathBuf) -> RuntimeOptions {
        let mut handlers = BTreeMap::new();
        let small_oci = exe.with_file_name("berth-oci");
        let (oci_path, oci_args) = if small_oci.is_file() {
            (small_oci, vec![])
        } else {
            (exe.clone(), vec!["oci".to_string()])
        };
        handlers.insert(
            "berth".to_string(),
            OciHandler {
                name: "berth".into(),
                path: oci_path,
                args: oci_args,
                root: state.join("oci/berth"),
            },
        );
        for name in ["runc", "crun"] {
            let found = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file());
            if let Some(path) = found {
                handlers.insert(
                    name.to_string(),
                    OciHandler {
                        name: name.into(),
                        path,
                        args: vec![],
                        root: state.join("oci").join(name),
                    },
                );
            }
        }
        let small = exe.with_file_name("berth-monitor");
        let (monitor, pod_init) = if small.is_file() {
            ((small.clone(), vec![]), (small, vec!["--pod-init".to_string()]))
        } else {
            (
                (exe.clone(), vec!["monitor".to_string()]),
                (exe.clone(), vec!["pod-init".to_string()]),
            )
        };
        RuntimeOptions {
            root,
            state,
            monitor,
            pod_init,
            exe,
            handlers,
            default_handler: "berth".into(),
            cgroup_parent: "/berth".into(),
        }
    }
}

impl RuntimeOptions {
    pub(crate) fn monitor_args(&self) -> Vec<&str> {
        self.monitor.1.iter().map(String::as_str).collect()
    }

    pub(crate) fn pod_init_args(&self) -> Vec<&str> {
        self.pod_init.1.iter().map(String::as_str).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} prefix {prefix:?} is ambiguous: {matches}")]
    Ambiguous {
        kind: &'static str,
        prefix: String,
        matches: String,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Namespace(#[from] NsError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: did not stop within {timeout:?} of SIGKILL")]
    StopTimeout { id: String, timeout: Duration },
}

impl RuntimeError {
    pub fn is_not_found(&self) -> bool {
        match self {
            RuntimeError::NotFound { .. } => true,
            RuntimeError::Store(e) => e.is_not_found(),
            _ => false,
        }
    }

    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { what, path, source }
    }
}

/// Pods and containers of every namespace on this host.
pub struct Runtime {
    store: Arc<Store>,
    opts: RuntimeOptions,
    cgroups: Cgroups,
    network: Option<Arc<dyn PodNetwork>>,
}

impl Runtime {
    pub fn new(store: Arc<Store>, opts: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        let cgroups = Cgroups::detect()?;
        Ok(Runtime {
            store,
            opts,
            cgroups,
            network: None,
        })
    }

    /// Gives pods with a network namespace of their own interfaces from
    /// `network`; without one they have loopback only.
    pub fn with_network(mut self, network: Arc<dyn PodNetwork>) -> Runtime {
        self.network = Some(network);
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.opts
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    pub fn handler(&self, name: &str) -> Result<&OciHandler, RuntimeError> {
        let name = if name.is_empty() {
            &self.opts.default_handler
        } else {
            name
        };
        self.opts.handlers.get(name).ok_or_else(|| {
            RuntimeError::InvalidArgument(format!(
                "runtime handler {name:?} is not configured (configured: {})",
                self.opts.handlers.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    fn pod_state_dir(&self, id: &str) -> PathBuf {
        self.opts.state.join("pods").join(id)
    }

    fn pod_root_dir(&self, id: &str) -> PathBuf {
        self.opts.root.join("pods").join(id)
    }

    pub fn ctr_state_dir(&self, id: &str) -> PathBuf {
        self.opts.state.join("containers").join(id)
    }

    /// The upper directory of a container's overlay: what it wrote.
    /// Serializes start, stop and remove of one container, across threads
    /// and processes (the daemon and the CLI): an exclusive `flock` on a
    /// file in its state directory, released when the guard drops. A
    /// container whose directory is already gone needs no lock.
    pub(crate) fn lock_container(&self, id: &str) -> Result<Option<std::fs::File>, RuntimeError> {
        // Called with ids from requests before their record is read: only a
        // plain name may become a path.
        if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
            return Err(RuntimeError::NotFound {
                kind: "container",
                id: id.to_owned(),
            });
        }
        let path = self.ctr_state_dir(id).join("lock");
        let file = match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RuntimeError::io("open lock", &path)(e)),
        };
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| RuntimeError::io("lock", &path)(e.into()))?;
        Ok(Some(file))
    }

    pub fn writable_layer(&self, id: &str) -> PathBuf {
        self.ctr_root_dir(id).join("upper")
    }

    fn ctr_root_dir(&self, id: &str) -> PathBuf {
        self.opts.root.join("containers").join(id)
    }

    /// The exit record file a container's monitor writes.
    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.ctr_state_dir(id).join("exit.json")
    }

    /// The monitor's attach socket of a container.
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.ctr_state_dir(id).join("attach")
    }

    /// Default directory of a CLI pod's logs.
    pub fn pod_log_dir(&self, id: &str) -> PathBuf {
        self.pod_root_dir(id).join("logs")
    }

    /// Directory for a pod's emptyDir volumes.
    pub fn pod_volumes_dir(&self, id: &str) -> PathBuf {
        self.pod_root_dir(id).join("volumes")
    }

    pub fn get_pod(&self, id: &str) -> Result<PodRecord, RuntimeError> {
        let row = self
            .store
            .get_object(ObjectKind::Pod, id)?
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "pod",
                id: id.to_string(),
            })?;
        decode("pod", &row)
    }

    pub fn get_container(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        let row =
            self.store
                .get_object(ObjectKind::Container, id)?
                .ok_or_else(|| RuntimeError::NotFound {
                    kind: "container",
                    id: id.to_string(),
                })?;
        decode("container", &row)
    }

    pub fn list_pods(&self, ns: Option<&Namespace>) -> Result<Vec<PodRecord>, RuntimeError> {
        self.store
            .list_objects(ObjectKind::Pod, ns, None)?
            .iter()
            .map(|r| decode("pod", r))
            .collect()
    }

    pub fn list_containers(
        &self,
        ns: Option<&Namespace>,
        pod: Option<&str>,
    ) -> Result<Vec<ContainerRecord>, RuntimeError> {
        self.store
            .list_objects(ObjectKind::Container, ns, pod)?
            .iter()
            .map(|r| decode("container", r))
            .collect()
    }

    /// A pod of `ns` by full id, unique id prefix or name.
    pub fn find_pod(&self, ns: &Namespace, key: &str) -> Result<PodRecord, RuntimeError> {
        let pods = self.list_pods(Some(ns))?;
        pick("pod", key, pods, |p| (&p.id, &p.config.name))
    }

    /// A container of a pod by full id, unique id prefix or name.
    pub fn find_container(
        &self,
        ns: &Namespace,
        pod: Option<&str>,
        key: &str,
    ) -> Result<ContainerRecord, RuntimeError> {
        let ctrs = self.list_containers(Some(ns), pod)?;
        pick("container", key, ctrs, |c| (&c.id, &c.config.name))
    }

    fn save_pod(&self, pod: &PodRecord) -> Result<(), RuntimeError> {
        let data = serde_json::to_string(pod).expect("pod record serializes");
        Ok(self.store.update_object(ObjectKind::Pod, &pod.id, &data)?)
    }

    /// Changes the resources recorded for container `id`: the caller has
    /// had the handler apply them, and status calls report them from here.
    pub fn update_recorded_resources(
        &self,
        id: &str,
        change: impl FnOnce(&mut crate::model::Resources),
    ) -> Result<(), RuntimeError> {
        let mut c = self.get_container(id)?;
        change(&mut c.config.resources);
        self.save_container(&c)
    }

    fn save_container(&self, c: &ContainerRecord) -> Result<(), RuntimeError> {
        let data = serde_json::to_string(c).expect("container record serializes");
        Ok(self.store.update_object(ObjectKind::Container, &c.id, &data)?)
    }

    /// Records a new object: `(id, namespace, parent, name)` and its document.
    fn insert(
        &self,
        kind: ObjectKind,
        (id, ns, parent, name): (&str, &str, &str, &str),
        data: String,
        resources: &[berth_store::Resource],
    ) -> Result<(), RuntimeError> {
        let row = ObjectRow {
            id: id.to_string(),
            namespace: ns
                .parse()
                .map_err(|e| RuntimeError::InvalidArgument(format!("namespace {ns:?}: {e}")))?,
            parent: parent.to_string(),
            name: name.to_string(),
            created: 0,
            data,
        };
        Ok(self.store.insert_object(kind, &row, resources)?)
    }
}

fn decode<T: serde::de::DeserializeOwned>(kind: &str, row: &ObjectRow) -> Result<T, RuntimeError> {
    serde_json::from_str(&row.data)
        .map_err(|e| RuntimeError::Store(StoreError::Corrupt(format!("{kind} {}: record: {e}", row.id))))
}

fn pick<T>(
    kind: &'static str,
    key: &str,
    items: Vec<T>,
    keys: impl Fn(&T) -> (&String, &String),
) -> Result<T, RuntimeError> {
    let mut by_prefix = Vec::new();
    for it in items {
        let (id, name) = keys(&it);
        if id == key || name == key {
            return Ok(it);
        }
        if id.starts_with(key) {
            by_prefix.push(it);
        }
    }
    match by_prefix.len() {
        1 => Ok(by_prefix.pop().expect("one")),
        0 => Err(RuntimeError::NotFound {
            kind,
            id: key.to_string(),
        }),
        _ => Err(RuntimeError::Ambiguous {
            kind,
            prefix: key.to_string(),
            matches: by_prefix
                .iter()
                .map(|i| keys(i).0[..12].to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A new random 64-hex-digit id, as CRI runtimes use.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
    let mut s = String::with_capacity(64);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

pub(crate) fn now_nanos() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// Undo steps of a multi-step operation, run in reverse unless the
/// operation completes (kuasar's step chain).
pub(crate) struct Rollback {
    steps: Vec<UndoStep>,
}

type UndoStep = (&'static str, Box<dyn FnOnce() + Send>);

impl Rollback {
    pub(crate) fn new() -> Rollback {
        Rollback { steps: Vec::new() }
    }

    pub(crate) fn push(&mut self, what: &'static str, f: impl FnOnce() + Send + 'static) {
        self.steps.push((what, Box::new(f)));
    }

    pub(crate) fn disarm(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            tracing::debug!(step = what, "undoing");
            f();
        }
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes. Starts fast: most
/// waits here end within milliseconds.
pub(crate) fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = Duration::from_micros(500);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Writes a file atomically (temp + rename).
pub(crate) fn write_file(path: &Path, data: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(RuntimeError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(RuntimeError::io("rename into place", path))
}

pub(crate) fn remove_dir(path: &Path) -> Result<(), RuntimeError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::Io {
            what: "remove directory",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}
