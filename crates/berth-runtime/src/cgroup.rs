//! The cgroupfs driver: pod and container cgroups at explicit paths, on
//! cgroup v1 (one hierarchy per controller group) and v2 (one unified tree).
//!
//! Every operation takes the cgroup path as an absolute path inside the
//! hierarchy (`/berth/pod-abc`), never a filesystem path: the mount points
//! come from [`Cgroups`], so tests point the driver at a fixture directory
//! with [`Cgroups::with_root`] and check the files it wrote.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::Resources;

/// v1 controllers berth manages. `name=systemd` and controllers berth
/// never limits (net_cls, perf_event, …) are left alone.
const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "memory", "pids", "cpuset", "blkio", "devices", "freezer", "hugetlb",
];

/// v2 controllers enabled down to a pod's cgroup. Only those the parent
/// offers in `cgroup.controllers` are asked for.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

/// v1 reports "no limit" as the largest page-aligned i64; anything this big
/// cannot be a real limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// How long `remove` waits for killed processes to leave.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read the mount table {path}: {source}")]
    Mountinfo { path: PathBuf, source: io::Error },
    #[error(
        "no cgroup hierarchy found: /sys/fs/cgroup is not cgroup2 and no v1 controller berth uses is mounted"
    )]
    NotMounted,
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("cgroup {path} does not exist")]
    NotFound { path: String },
    #[error("cgroup {path} ({hierarchy}): cannot {op} {file}: {source}")]
    Io {
        path: String,
        hierarchy: String,
        op: &'static str,
        file: PathBuf,
        source: io::Error,
    },
    #[error("cgroup {path} ({hierarchy}): cannot parse {file}: {content:?}")]
    Parse {
        path: String,
        hierarchy: String,
        file: PathBuf,
        content: String,
    },
    #[error("cgroup {path} ({hierarchy}): processes {pids:?} still inside after SIGKILL")]
    Busy {
        path: String,
        hierarchy: String,
        pids: Vec<u32>,
    },
    #[error("cgroup {path}: {what} cannot be set on cgroup v1")]
    Unsupported { path: String, what: String },
}

/// One mounted v1 hierarchy and the controllers bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Mount {
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
}

impl V1Mount {
    fn name(&self) -> String {
        self.controllers.join(",")
    }

    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The hierarchies berth drives. A cgroup path is joined to each mount
/// point as is: inside a cgroup namespace (or a container that bind-mounted
/// its own subtree) the mount point already is the namespace's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cgroups {
    V1 {
        mounts: Vec<V1Mount>,
        /// Other cgroup mounts (name=systemd, a hybrid layout's cgroup2,
        /// controllers berth leaves alone), where runtimes may leave
        /// directories that removal prunes.
        others: Vec<PathBuf>,
    },
    V2 {
        root: PathBuf,
    },
}

/// One sample of a cgroup's usage, the fields kubelet's summary API needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStats {
    /// Unix time of the sample in nanoseconds.
    pub timestamp_ns: u64,
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub memory_usage: u64,
    /// Usage minus inactive file pages, as kubelet computes it.
    pub memory_working_set: u64,
    pub memory_rss: u64,
    pub memory_limit: Option<u64>,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
    pub oom_kills: u64,
}

/// A directory of one cgroup in one hierarchy, with the name errors use.
struct Dir {
    hierarchy: String,
    mountpoint: PathBuf,
    dir: PathBuf,
}

impl Cgroups {
    /// Reads the mount table of this process. The machine counts as v2 only
    /// when /sys/fs/cgroup itself is cgroup2: a hybrid layout's cgroup2
    /// mount (/sys/fs/cgroup/unified) holds no controller berth needs.
    pub fn detect() -> Result<Cgroups, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Mountinfo {
            path: path.to_owned(),
            source,
        })?;
        Cgroups::from_mountinfo(&text)
    }

    pub fn from_mountinfo(text: &str) -> Result<Cgroups, CgroupError> {
        let mut v2_mounts = Vec::new();
        let mut v1: Vec<V1Mount> = Vec::new();
        let mut others = Vec::new();
        for entry in text.lines().filter_map(parse_mountinfo_line) {
            if matches!(entry.fstype, "cgroup" | "cgroup2") {
                others.push(entry.mountpoint.clone());
            }
            match entry.fstype {
                "cgroup2" => v2_mounts.push(entry.mountpoint),
                "cgroup" => {
                    let controllers: Vec<String> = entry
                        .super_options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_owned)
                        .collect();
                    // A hierarchy mounted twice (bind mounts) counts once.
                    if !controllers.is_empty() && !v1.iter().any(|m| m.controllers == controllers) {
                        v1.push(V1Mount {
                            controllers,
                            mountpoint: entry.mountpoint,
                        });
                    }
                }
                _ => {}
            }
        }
        let standard = Path::new("/sys/fs/cgroup");
        if let Some(root) = v2_mounts.iter().find(|m| *m == standard) {
            return Ok(Cgroups::V2 { root: root.clone() });
        }
        if !v1.is_empty() {
            others.retain(|o| !v1.iter().any(|m| &m.mountpoint == o));
            return Ok(Cgroups::V1 { mounts: v1, others });
        }
        match v2_mounts.into_iter().next() {
            Some(root) => Ok(Cgroups::V2 { root }),
            None => Err(CgroupError::NotMounted),
        }
    }

    /// A driver rooted at `root`: for v2 the unified mount itself, for v1 a
    /// directory holding one subdirectory per hierarchy, named after its
    /// controllers (`cpu,cpuacct`, `memory`, …) as under /sys/fs/cgroup.
    pub fn with_root(version: CgroupVersion, root: &Path) -> Cgroups {
        match version {
            CgroupVersion::V2 => Cgroups::V2 {
                root: root.to_owned(),
            },
            CgroupVersion::V1 => {
                let mut mounts: Vec<V1Mount> = fs::read_dir(root)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        let controllers: Vec<String> = name
                            .split(',')
                            .filter(|c| V1_CONTROLLERS.contains(c))
                            .map(str::to_owned)
                            .collect();
                        (!controllers.is_empty() && e.path().is_dir()).then(|| V1Mount {
                            controllers,
                            mountpoint: e.path(),
                        })
                    })
                    .collect();
                mounts.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
                Cgroups::V1 {
                    mounts,
                    others: Vec::new(),
                }
            }
        }
    }

    /// Whether `controller` can be used: on v1, whether a hierarchy holds
    /// it; on v2, whether the root offers it. Device control on v2 is not a
    /// controller but a BPF program, which every v2 cgroup can take.
    pub fn has_controller(&self, controller: &str) -> bool {
        match self {
            Cgroups::V1 { mounts, .. } => mounts.iter().any(|m| m.has(controller)),
            Cgroups::V2 { root } => {
                controller == "devices"
                    || fs::read_to_string(root.join("cgroup.controllers"))
                        .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
            }
        }
    }

    pub fn version(&self) -> CgroupVersion {
        match self {
            Cgroups::V1 { .. } => CgroupVersion::V1,
            Cgroups::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// The cgroup's directory in every hierarchy berth uses.
    pub fn dirs(&self, path: &str) -> Result<Vec<PathBuf>, CgroupError> {
        Ok(self.hier_dirs(path)?.into_iter().map(|d| d.dir).collect())
    }

    fn hier_dirs(&self, path: &str) -> Result<Vec<Dir>, CgroupError> {
        let rel = relative(path)?;
        Ok(match self {
            Cgroups::V1 { mounts, .. } => mounts
                .iter()
                .map(|m| Dir {
                    hierarchy: m.name(),
                    mountpoint: m.mountpoint.clone(),
                    dir: m.mountpoint.join(&rel),
                })
                .collect(),
            Cgroups::V2 { root } => vec![Dir {
                hierarchy: "cgroup2".to_owned(),
                mountpoint: root.clone(),
                dir: root.join(&rel),
            }],
        })
    }

    /// The directory holding `controller`'s files for `path`.
    fn controller_dir(&self, path: &str, controller: &str) -> Result<Option<Dir>, CgroupError> {
        let rel = relative(path)?;
        Ok(match self {
            Cgroups::V1 { mounts, .. } => mounts.iter().find(|m| m.has(controller)).map(|m| Dir {
                hierarchy: m.name(),
                mountpoint: m.mountpoint.clone(),
                dir: m.mountpoint.join(&rel),
            }),
            Cgroups::V2 { root } => Some(Dir {
                hierarchy: "cgroup2".to_owned(),
                mountpoint: root.clone(),
                dir: root.join(&rel),
            }),
        })
    }

    /// Whether the cgroup exists in any hierarchy.
    pub fn exists(&self, path: &str) -> bool {
        self.hier_dirs(path)
            .map(|dirs| dirs.iter().any(|d| d.dir.is_dir()))
            .unwrap_or(false)
    }

    /// Creates the cgroup and its missing ancestors in every hierarchy.
    pub fn create(&self, path: &str) -> Result<(), CgroupError> {
        let rel = relative(path)?;
        if rel.as_os_str().is_empty() {
            return Err(invalid(path, "the root cgroup cannot be created"));
        }
        for d in self.hier_dirs(path)? {
            let is_cpuset = match self {
                Cgroups::V1 { mounts, .. } => mounts
                    .iter()
                    .any(|m| m.mountpoint == d.mountpoint && m.has("cpuset")),
                Cgroups::V2 { .. } => false,
            };
            let mut parent = d.mountpoint.clone();
            for component in rel.components() {
                let child = parent.join(component);
                if self.version() == CgroupVersion::V2 {
                    enable_subtree_controllers(path, &d.hierarchy, &parent)?;
                }
                mkdir(path, &d.hierarchy, &child)?;
                if is_cpuset {
                    inherit_cpuset(path, &d.hierarchy, &parent, &child)?;
                }
                parent = child;
            }
        }
        Ok(())
    }

    /// Readies the kernel's cgroup migration lock for a move that is about
    /// to come, from a short-lived thread; `None` when a priming is already
    /// under way.
    ///
    /// Every move of a process into a cgroup takes the global
    /// `cgroup_threadgroup_rwsem` for writing, and when no writer came
    /// during the last RCU grace period, taking it first waits for a whole
    /// grace period (8–13 ms on the project's machine): a container's init
    /// paid that on every create. A writer that comes while another's grace
    /// period runs, or within a grace period after it, waits no more. This
    /// moves the calling process into the cgroup it already is in (a no-op
    /// that still takes the lock), so the grace period passes while the
    /// caller spawns the monitor and the runtime, which then moves the init
    /// in at once.
    pub fn prime_migration(&self) -> Option<thread::JoinHandle<Result<(), CgroupError>>> {
        static PRIMING: AtomicBool = AtomicBool::new(false);
        if PRIMING.swap(true, Ordering::AcqRel) {
            return None;
        }
        let procs = self.own_procs_file();
        let spawned = thread::Builder::new().name("cgroup-prime".into()).spawn(move || {
            let result = procs.and_then(|file| {
                // "0" is the writing process: the whole daemon, where it is.
                write("/", "own cgroup", &file, "0")
            });
            PRIMING.store(false, Ordering::Release);
            result
        });
        match spawned {
            Ok(handle) => Some(handle),
            Err(_) => {
                PRIMING.store(false, Ordering::Release);
                None
            }
        }
    }

    /// `cgroup.procs` of the cgroup this process is in, in one hierarchy.
    fn own_procs_file(&self) -> Result<PathBuf, CgroupError> {
        let table = Path::new("/proc/self/cgroup");
        let text = fs::read_to_string(table).map_err(|e| io_err("/", "own cgroup", "read", table, e))?;
        let not_found = || CgroupError::NotFound {
            path: "the cgroup of this process".to_owned(),
        };
        let (mountpoint, own) = match self {
            Cgroups::V1 { mounts, .. } => {
                let m = mounts.first().ok_or_else(not_found)?;
                let own = text
                    .lines()
                    .filter_map(|l| l.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
                    .find(|(ctrls, _)| ctrls.split(',').any(|c| m.has(c)))
                    .map(|(_, path)| path.to_owned());
                (m.mountpoint.clone(), own)
            }
            Cgroups::V2 { root } => (
                root.clone(),
                text.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_owned)),
            ),
        };
        let own = own.ok_or_else(not_found)?;
        Ok(mountpoint.join(relative(&own)?).join("cgroup.procs"))
    }

    /// Moves a process (all its threads) into the cgroup in every hierarchy.
    pub fn add_proc(&self, path: &str, pid: u32) -> Result<(), CgroupError> {
        for d in self.hier_dirs(path)? {
            write(path, &d.hierarchy, &d.dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Writes `value` to `file` of `controller`'s hierarchy in the cgroup at
    /// `path`: for callers with a resource model of their own (`berth oci`
    /// applies OCI resources through it).
    pub fn write_controller_file(
        &self,
        path: &str,
        controller: &str,
        file: &str,
        value: &str,
    ) -> Result<(), CgroupError> {
        let d = self
            .controller_dir(path, controller)?
            .ok_or_else(|| CgroupError::Io {
                path: path.to_owned(),
                hierarchy: controller.to_owned(),
                op: "write",
                file: PathBuf::from(file),
                source: io::Error::new(io::ErrorKind::NotFound, "controller not mounted"),
            })?;
        write(path, &d.hierarchy, &d.dir.join(file), value)
    }

    /// Writes the limits `res` sets; zero or empty fields are left as they
    /// are. `oom_score_adj` is a process attribute, not a cgroup one.
    pub fn apply(&self, path: &str, res: &Resources) -> Result<(), CgroupError> {
        if !self.exists(path) {
            return Err(CgroupError::NotFound {
                path: path.to_owned(),
            });
        }
        let writes = match self {
            Cgroups::V1 { .. } => {
                if let Some(key) = res.unified.keys().next() {
                    return Err(CgroupError::Unsupported {
                        path: path.to_owned(),
                        what: format!("unified key {key}"),
                    });
                }
                v1_writes(res)
            }
            Cgroups::V2 { .. } => v2_writes(res),
        };
        for (controller, file, value) in writes {
            self.write_controller_file(path, controller, &file, &value)?;
        }
        Ok(())
    }

    /// Kills every process left in the cgroup and its descendants and
    /// removes their directories, deepest first, in every hierarchy. A
    /// cgroup that does not exist is already removed.
    pub fn remove(&self, path: &str) -> Result<(), CgroupError> {
        let rel = relative(path)?;
        if rel.as_os_str().is_empty() {
            return Err(invalid(path, "the root cgroup cannot be removed"));
        }
        // The usual case is an empty leaf (its processes gone): one rmdir
        // per hierarchy, no directory listing, no freezing (on v1 the first
        // freezer user flips a static key, which patches kernel text on
        // every CPU). What refuses holds processes or child cgroups.
        let mut busy = Vec::new();
        for d in self.hier_dirs(path)? {
            match fs::remove_dir(&d.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => busy.push(d),
            }
        }
        if busy.iter().any(|d| !tree_procs(&d.dir).is_empty()) {
            self.kill_all(path, &busy)?;
            wait_drained(path, &busy)?;
        }
        for d in &busy {
            remove_tree(path, &d.hierarchy, &d.dir)?;
        }
        if let Cgroups::V1 { others, .. } = self {
            prune_other_hierarchies(&rel, others);
        }
        Ok(())
    }

    fn kill_all(&self, path: &str, dirs: &[Dir]) -> Result<(), CgroupError> {
        match self {
            Cgroups::V2 { .. } => {
                let d = &dirs[0];
                let kill = d.dir.join("cgroup.kill");
                if kill.exists() {
                    write(path, &d.hierarchy, &kill, "1")
                } else {
                    // Without cgroup.kill a forking process can outrun one
                    // round of kills; wait_drained's rounds catch the rest.
                    kill_tree(path, d)
                }
            }
            Cgroups::V1 { mounts, .. } => {
                // A frozen cgroup cannot fork between our read of
                // cgroup.procs and the kill; thawing lets SIGKILL act.
                let freezer = mounts.iter().find(|m| m.has("freezer")).and_then(|m| {
                    dirs.iter()
                        .find(|d| d.mountpoint == m.mountpoint && d.dir.join("freezer.state").exists())
                });
                if let Some(f) = freezer {
                    freeze(path, f)?;
                }
                let result = dirs.iter().try_for_each(|d| kill_tree(path, d));
                if let Some(f) = freezer {
                    write(path, &f.hierarchy, &f.dir.join("freezer.state"), "THAWED")?;
                }
                result
            }
        }
    }

    /// PIDs in the cgroup itself (not its descendants), in every hierarchy.
    pub fn procs(&self, path: &str) -> Vec<u32> {
        let mut pids = BTreeSet::new();
        for d in self.hier_dirs(path).unwrap_or_default() {
            pids.extend(read_procs(&d.dir));
        }
        pids.into_iter().collect()
    }

    /// The files whose `oom_kill` counter tells whether the kernel OOM-killed
    /// a process of this cgroup.
    pub fn oom_kill_files(&self, path: &str) -> Vec<PathBuf> {
        let file = match self {
            Cgroups::V1 { .. } => "memory.oom_control",
            Cgroups::V2 { .. } => "memory.events",
        };
        match self.controller_dir(path, "memory") {
            Ok(Some(d)) => vec![d.dir.join(file)],
            _ => Vec::new(),
        }
    }

    pub fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError> {
        if !self.exists(path) {
            return Err(CgroupError::NotFound {
                path: path.to_owned(),
            });
        }
        let mut stats = CgroupStats {
            timestamp_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            ..CgroupStats::default()
        };
        match self {
            Cgroups::V1 { .. } => self.v1_stats(path, &mut stats)?,
            Cgroups::V2 { .. } => self.v2_stats(path, &mut stats)?,
        }
        stats.oom_kills = self.oom_kill_files(path).iter().map(|f| read_oom_kills(f)).sum();
        Ok(stats)
    }

    fn v1_stats(&self, path: &str, s: &mut CgroupStats) -> Result<(), CgroupError> {
        if let Some(d) = self.controller_dir(path, "cpuacct")? {
            s.cpu_usage_ns = read_u64(path, &d, "cpuacct.usage")?.unwrap_or(0);
            let ticks = read_keyed(path, &d, "cpuacct.stat")?;
            let ns_per_tick = 1_000_000_000 / clock_ticks();
            s.cpu_user_ns = ticks.get("user").copied().unwrap_or(0) * ns_per_tick;
            s.cpu_system_ns = ticks.get("system").copied().unwrap_or(0) * ns_per_tick;
        }
        if let Some(d) = self.controller_dir(path, "memory")? {
            s.memory_usage = read_u64(path, &d, "memory.usage_in_bytes")?.unwrap_or(0);
            s.memory_limit = read_u64(path, &d, "memory.limit_in_bytes")?.filter(|l| *l < V1_UNLIMITED);
            let stat = read_keyed(path, &d, "memory.stat")?;
            // The total_ counters include descendants, as usage does.
            let get = |k: &str| {
                stat.get(format!("total_{k}").as_str())
                    .or_else(|| stat.get(k))
                    .copied()
                    .unwrap_or(0)
            };
            s.memory_working_set = s.memory_usage.saturating_sub(get("inactive_file"));
            s.memory_rss = get("rss");
            s.page_faults = get("pgfault");
            s.major_page_faults = get("pgmajfault");
        }
        if let Some(d) = self.controller_dir(path, "pids")? {
            s.pids_current = read_u64(path, &d, "pids.current")?.unwrap_or(0);
            s.pids_limit = read_u64(path, &d, "pids.max")?;
        }
        Ok(())
    }

    fn v2_stats(&self, path: &str, s: &mut CgroupStats) -> Result<(), CgroupError> {
        let Some(d) = self.controller_dir(path, "")? else {
            return Ok(());
        };
        let cpu = read_keyed(path, &d, "cpu.stat")?;
        let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
        s.cpu_usage_ns = us("usage_usec");
        s.cpu_user_ns = us("user_usec");
        s.cpu_system_ns = us("system_usec");
        s.memory_usage = read_u64(path, &d, "memory.current")?.unwrap_or(0);
        s.memory_limit = read_u64(path, &d, "memory.max")?;
        let stat = read_keyed(path, &d, "memory.stat")?;
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        s.memory_working_set = s.memory_usage.saturating_sub(get("inactive_file"));
        s.memory_rss = get("anon");
        s.page_faults = get("pgfault");
        s.major_page_faults = get("pgmajfault");
        s.pids_current = read_u64(path, &d, "pids.current")?.unwrap_or(0);
        s.pids_limit = read_u64(path, &d, "pids.max")?;
        Ok(())
    }
}

/// The `oom_kill` counter of a v1 `memory.oom_control` or v2
/// `memory.events` file; 0 when the file is gone or has no such line.
pub fn read_oom_kills(file: &Path) -> u64 {
    fs::read_to_string(file)
        .map(|text| parse_keyed(&text).get("oom_kill").copied().unwrap_or(0))
        .unwrap_or(0)
}

struct MountinfoEntry<'a> {
    mountpoint: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

fn parse_mountinfo_line(line: &str) -> Option<MountinfoEntry<'_>> {
    let (pre, post) = line.split_once(" - ")?;
    let mountpoint = pre.split(' ').nth(4)?;
    let mut post = post.split(' ');
    let fstype = post.next()?;
    let _source = post.next()?;
    let super_options = post.next().unwrap_or("");
    Some(MountinfoEntry {
        mountpoint: PathBuf::from(unescape_octal(mountpoint)),
        fstype,
        super_options,
    })
}

/// Runtimes (runc, youki) also place containers in the hierarchies berth
/// leaves alone on v1 (name=systemd, a hybrid layout's cgroup2 mount), which
/// leaves the pod's level behind there once they removed their own. Those
/// directories hold no process by now: remove what is empty, deepest first.
fn prune_other_hierarchies(rel: &Path, others: &[PathBuf]) {
    for mountpoint in others {
        let top = mountpoint.join(rel);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = Vec::new();
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            if let Err(e) = fs::remove_dir(d) {
                tracing::debug!("cgroup {}: {e}", d.display());
            }
        }
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn invalid(path: &str, reason: &'static str) -> CgroupError {
    CgroupError::InvalidPath {
        path: path.to_owned(),
        reason,
    }
}

/// The cgroup path relative to a hierarchy's mount point. Paths are
/// absolute and may not climb out with `..`.
fn relative(path: &str) -> Result<PathBuf, CgroupError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(invalid(path, "not absolute"));
    }
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => rel.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(path, "contains .."));
            }
        }
    }
    Ok(rel)
}

fn io_err(path: &str, hierarchy: &str, op: &'static str, file: &Path, source: io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.to_owned(),
        hierarchy: hierarchy.to_owned(),
        op,
        file: file.to_owned(),
        source,
    }
}

fn write(path: &str, hierarchy: &str, file: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(file, value).map_err(|e| io_err(path, hierarchy, "write", file, e))
}

fn mkdir(path: &str, hierarchy: &str, dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err(path, hierarchy, "create", dir, e)),
        _ => Ok(()),
    }
}

/// A new v1 cpuset cgroup starts with empty cpus and mems and refuses
/// tasks until they are set; give it its parent's.
fn inherit_cpuset(path: &str, hierarchy: &str, parent: &Path, child: &Path) -> Result<(), CgroupError> {
    for name in ["cpuset.cpus", "cpuset.mems"] {
        let file = child.join(name);
        let own = fs::read_to_string(&file).unwrap_or_default();
        if !own.trim().is_empty() {
            continue;
        }
        let from = parent.join(name);
        let value = fs::read_to_string(&from).map_err(|e| io_err(path, hierarchy, "read", &from, e))?;
        write(path, hierarchy, &file, value.trim())?;
    }
    Ok(())
}

/// v2 hands a controller to a child only when the parent lists it in
/// cgroup.subtree_control.
fn enable_subtree_controllers(path: &str, hierarchy: &str, parent: &Path) -> Result<(), CgroupError> {
    let available_file = parent.join("cgroup.controllers");
    let available = fs::read_to_string(&available_file)
        .map_err(|e| io_err(path, hierarchy, "read", &available_file, e))?;
    let control = parent.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in available.split_whitespace() {
        if V2_CONTROLLERS.contains(&c) && !enabled.contains(&c) {
            write(path, hierarchy, &control, &format!("+{c}"))?;
        }
    }
    Ok(())
}

fn v1_writes(res: &Resources) -> Vec<(&'static str, String, String)> {
    let mut w = Vec::new();
    if res.memory_limit > 0 {
        w.push((
            "memory",
            "memory.limit_in_bytes".into(),
            res.memory_limit.to_string(),
        ));
    }
    if res.cpu_shares > 0 {
        w.push(("cpu", "cpu.shares".into(), res.cpu_shares.to_string()));
    }
    // The period first: the kernel checks the quota against the current one.
    if res.cpu_period > 0 {
        w.push(("cpu", "cpu.cfs_period_us".into(), res.cpu_period.to_string()));
    }
    if res.cpu_quota != 0 {
        w.push(("cpu", "cpu.cfs_quota_us".into(), res.cpu_quota.to_string()));
    }
    same_in_both_versions(res, &mut w);
    for (size, limit) in &res.hugepage_limits {
        w.push((
            "hugetlb",
            format!("hugetlb.{size}.limit_in_bytes"),
            limit.to_string(),
        ));
    }
    w
}

/// The files v1 and v2 name alike.
fn same_in_both_versions(res: &Resources, w: &mut Vec<(&'static str, String, String)>) {
    if !res.cpuset_cpus.is_empty() {
        w.push(("cpuset", "cpuset.cpus".into(), res.cpuset_cpus.clone()));
    }
    if !res.cpuset_mems.is_empty() {
        w.push(("cpuset", "cpuset.mems".into(), res.cpuset_mems.clone()));
    }
    if res.pids_limit > 0 {
        w.push(("pids", "pids.max".into(), res.pids_limit.to_string()));
    }
}

fn v2_writes(res: &Resources) -> Vec<(&'static str, String, String)> {
    let mut w = Vec::new();
    if res.memory_limit > 0 {
        w.push(("memory", "memory.max".into(), res.memory_limit.to_string()));
    }
    if res.cpu_shares > 0 {
        w.push((
            "cpu",
            "cpu.weight".into(),
            shares_to_weight(res.cpu_shares).to_string(),
        ));
    }
    if res.cpu_quota != 0 || res.cpu_period > 0 {
        let quota = if res.cpu_quota > 0 {
            res.cpu_quota.to_string()
        } else {
            "max".to_owned()
        };
        let period = if res.cpu_period > 0 {
            res.cpu_period
        } else {
            100_000
        };
        w.push(("cpu", "cpu.max".into(), format!("{quota} {period}")));
    }
    same_in_both_versions(res, &mut w);
    for (size, limit) in &res.hugepage_limits {
        w.push(("hugetlb", format!("hugetlb.{size}.max"), limit.to_string()));
    }
    for (key, value) in &res.unified {
        w.push(("", key.clone(), value.clone()));
    }
    w
}

/// The conversion runc and kubelet use: shares 2..=262144 map linearly
/// onto weight 1..=10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn read_procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// The cgroup directory and all its descendants, parents before children.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

fn tree_procs(dir: &Path) -> Vec<u32> {
    subtree(dir).iter().flat_map(|d| read_procs(d)).collect()
}

fn kill_tree(path: &str, d: &Dir) -> Result<(), CgroupError> {
    for pid in tree_procs(&d.dir) {
        // SAFETY: kill has no memory effects; a pid gone meanwhile is ESRCH.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(io_err(path, &d.hierarchy, "kill a process of", &d.dir, e));
            }
        }
    }
    Ok(())
}

fn freeze(path: &str, d: &Dir) -> Result<(), CgroupError> {
    let state = d.dir.join("freezer.state");
    write(path, &d.hierarchy, &state, "FROZEN")?;
    let deadline = Instant::now() + Duration::from_secs(1);
    // Freezing is asynchronous; killing before it settles is still correct,
    // only less airtight against forks, so give up quietly at the deadline.
    while Instant::now() < deadline {
        match fs::read_to_string(&state) {
            Ok(s) if s.trim() == "FROZEN" => break,
            Ok(_) => thread::sleep(POLL),
            Err(_) => break,
        }
    }
    Ok(())
}

/// Waits until no process is left anywhere below the cgroup, killing
/// stragglers forked after the first round.
fn wait_drained(path: &str, dirs: &[Dir]) -> Result<(), CgroupError> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let left = dirs.iter().find_map(|d| {
            let pids = tree_procs(&d.dir);
            (!pids.is_empty()).then_some((d, pids))
        });
        let Some((d, pids)) = left else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(CgroupError::Busy {
                path: path.to_owned(),
                hierarchy: d.hierarchy.clone(),
                pids,
            });
        }
        kill_tree(path, d)?;
        thread::sleep(POLL);
    }
}

/// rmdir children before parents. The kernel may report EBUSY for a
/// moment after the last task left, so retry until the deadline.
fn remove_tree(path: &str, hierarchy: &str, dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    for d in subtree(dir).iter().rev() {
        loop {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    thread::sleep(POLL);
                }
                Err(e) => return Err(io_err(path, hierarchy, "remove", d, e)),
            }
        }
    }
    Ok(())
}

/// A single-value file; `max` (v2's "no limit") reads as None, and so does
/// a missing file, which means the controller is not enabled here.
fn read_u64(path: &str, d: &Dir, name: &str) -> Result<Option<u64>, CgroupError> {
    let file = d.dir.join(name);
    let text = match fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, &d.hierarchy, "read", &file, e)),
    };
    let value = text.trim();
    if value == "max" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        hierarchy: d.hierarchy.clone(),
        file,
        content: value.to_owned(),
    })
}

fn read_keyed(path: &str, d: &Dir, name: &str) -> Result<HashMap<String, u64>, CgroupError> {
    let file = d.dir.join(name);
    match fs::read_to_string(&file) {
        Ok(t) => Ok(parse_keyed(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(io_err(path, &d.hierarchy, "read", &file, e)),
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, oom_control).
fn parse_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Priming moves this process into the cgroup it is in: the write goes
    /// through (the kernel takes its migration lock) and nothing moves.
    /// Needs root and the machine's cgroup mounts.
    #[test]
    fn priming_the_migration_lock_leaves_the_process_where_it_is() {
        let Ok(cgroups) = Cgroups::detect() else {
            return;
        };
        let before = fs::read_to_string("/proc/self/cgroup").unwrap();
        let file = cgroups.own_procs_file().unwrap();
        assert!(
            file.ends_with("cgroup.procs") && file.exists(),
            "{}",
            file.display()
        );
        // Another test's priming may be under way; wait for a turn.
        let handle = loop {
            if let Some(h) = cgroups.prime_migration() {
                break h;
            }
            thread::sleep(POLL);
        };
        handle.join().unwrap().unwrap();
        assert_eq!(fs::read_to_string("/proc/self/cgroup").unwrap(), before);
        let procs = fs::read_to_string(&file).unwrap();
        assert!(
            procs.lines().any(|p| p == std::process::id().to_string()),
            "this process is not listed in {}",
            file.display()
        );
    }

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
42 31 0:39 / /sys/fs/cgroup/net_cls rw,relatime - cgroup cgroup rw,net_cls
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 23 0:32 / /mnt/mem\\040copy rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_layout_is_v1_without_systemd_or_unused_controllers() {
        let cg = Cgroups::from_mountinfo(HYBRID).unwrap();
        let Cgroups::V1 { mounts, .. } = cg else {
            panic!("expected v1, got {cg:?}")
        };
        let names: Vec<String> = mounts.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory", "pids"]);
        assert_eq!(mounts[0].mountpoint, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
    }

    #[test]
    fn unified_layout_is_v2() {
        let text = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Cgroups::from_mountinfo(text).unwrap(),
            Cgroups::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert!(matches!(
            Cgroups::from_mountinfo("1 0 8:1 / / rw - ext4 /dev/sda rw\n"),
            Err(CgroupError::NotMounted)
        ));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_octal("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_octal("/plain\\09"), "/plain\\09");
    }

    #[test]
    fn paths_must_be_absolute_and_stay_inside() {
        assert!(relative("berth/x").is_err());
        assert!(relative("/berth/../x").is_err());
        assert_eq!(relative("/berth/pod").unwrap(), Path::new("berth/pod"));
    }

    fn v1_fixture() -> (tempfile::TempDir, Cgroups) {
        let tmp = tempfile::tempdir().unwrap();
        for h in ["cpu,cpuacct", "memory", "pids", "cpuset", "freezer"] {
            fs::create_dir(tmp.path().join(h)).unwrap();
        }
        fs::create_dir(tmp.path().join("name=systemd")).unwrap();
        fs::write(tmp.path().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
        fs::write(tmp.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let cg = Cgroups::with_root(CgroupVersion::V1, tmp.path());
        (tmp, cg)
    }

    #[test]
    fn v1_create_copies_cpuset_into_every_new_level() {
        let (tmp, cg) = v1_fixture();
        cg.create("/berth/pod").unwrap();
        for level in ["berth", "berth/pod"] {
            let d = tmp.path().join("cpuset").join(level);
            assert_eq!(fs::read_to_string(d.join("cpuset.cpus")).unwrap(), "0-3");
            assert_eq!(fs::read_to_string(d.join("cpuset.mems")).unwrap(), "0");
        }
        assert!(tmp.path().join("memory/berth/pod").is_dir());
        assert!(!tmp.path().join("name=systemd/berth").exists());
        assert!(cg.exists("/berth/pod"));
    }

    #[test]
    fn v1_apply_writes_each_controller_file() {
        let (tmp, cg) = v1_fixture();
        cg.create("/p").unwrap();
        let res = Resources {
            memory_limit: 1 << 20,
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            pids_limit: 10,
            ..Resources::default()
        };
        cg.apply("/p", &res).unwrap();
        let read = |f: &str| fs::read_to_string(tmp.path().join(f)).unwrap();
        assert_eq!(read("memory/p/memory.limit_in_bytes"), "1048576");
        assert_eq!(read("cpu,cpuacct/p/cpu.shares"), "512");
        assert_eq!(read("cpu,cpuacct/p/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu,cpuacct/p/cpu.cfs_period_us"), "100000");
        assert_eq!(read("pids/p/pids.max"), "10");
        let unified = Resources {
            unified: [("memory.high".into(), "1".into())].into(),
            ..Resources::default()
        };
        assert!(matches!(
            cg.apply("/p", &unified),
            Err(CgroupError::Unsupported { .. })
        ));
        assert!(matches!(
            cg.apply("/missing", &res),
            Err(CgroupError::NotFound { .. })
        ));
    }

    #[test]
    fn v1_stats_read_totals_and_compute_working_set() {
        let (tmp, cg) = v1_fixture();
        cg.create("/p").unwrap();
        let put = |f: &str, s: &str| fs::write(tmp.path().join(f), s).unwrap();
        put("cpu,cpuacct/p/cpuacct.usage", "123456789\n");
        put("cpu,cpuacct/p/cpuacct.stat", "user 7\nsystem 3\n");
        put("memory/p/memory.usage_in_bytes", "10000\n");
        put("memory/p/memory.limit_in_bytes", "9223372036854771712\n");
        put(
            "memory/p/memory.stat",
            "inactive_file 1\nrss 2\ntotal_inactive_file 4000\ntotal_rss 3000\ntotal_pgfault 11\ntotal_pgmajfault 2\n",
        );
        put(
            "memory/p/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        put("pids/p/pids.current", "3\n");
        put("pids/p/pids.max", "max\n");
        let s = cg.stats("/p").unwrap();
        let tick = 1_000_000_000 / clock_ticks();
        assert_eq!(s.cpu_usage_ns, 123456789);
        assert_eq!((s.cpu_user_ns, s.cpu_system_ns), (7 * tick, 3 * tick));
        assert_eq!(s.memory_usage, 10000);
        assert_eq!(s.memory_working_set, 6000);
        assert_eq!(s.memory_rss, 3000);
        assert_eq!(s.memory_limit, None);
        assert_eq!((s.page_faults, s.major_page_faults), (11, 2));
        assert_eq!((s.pids_current, s.pids_limit), (3, None));
        assert_eq!(s.oom_kills, 2);
        assert!(s.timestamp_ns > 0);
        assert_eq!(
            cg.oom_kill_files("/p"),
            [tmp.path().join("memory/p/memory.oom_control")]
        );
    }

    fn v2_fixture() -> (tempfile::TempDir, Cgroups) {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids rdma\n",
        )
        .unwrap();
        fs::write(tmp.path().join("cgroup.subtree_control"), "").unwrap();
        let cg = Cgroups::with_root(CgroupVersion::V2, tmp.path());
        (tmp, cg)
    }

    #[test]
    fn v2_create_enables_controllers_in_the_parent() {
        let (tmp, cg) = v2_fixture();
        fs::create_dir(tmp.path().join("kubepods")).unwrap();
        fs::write(
            tmp.path().join("kubepods/cgroup.controllers"),
            "cpu memory pids\n",
        )
        .unwrap();
        cg.create("/kubepods/pod1").unwrap();
        // A plain file keeps only the last write; the kernel's keeps all.
        assert_eq!(
            fs::read_to_string(tmp.path().join("kubepods/cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join("cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        assert!(tmp.path().join("kubepods/pod1").is_dir());
    }

    #[test]
    fn v2_apply_writes_unified_files() {
        let (tmp, cg) = v2_fixture();
        fs::create_dir(tmp.path().join("p")).unwrap();
        let res = Resources {
            memory_limit: 1 << 20,
            cpu_shares: 1024,
            cpu_quota: 50_000,
            cpu_period: 0,
            pids_limit: 10,
            cpuset_cpus: "0".into(),
            hugepage_limits: [("2MB".into(), 4096)].into(),
            unified: [("memory.high".into(), "900000".into())].into(),
            ..Resources::default()
        };
        cg.apply("/p", &res).unwrap();
        let read = |f: &str| fs::read_to_string(tmp.path().join("p").join(f)).unwrap();
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "10");
        assert_eq!(read("cpuset.cpus"), "0");
        assert_eq!(read("hugetlb.2MB.max"), "4096");
        assert_eq!(read("memory.high"), "900000");
    }

    #[test]
    fn v2_stats_parse_cpu_memory_pids_and_oom() {
        let (tmp, cg) = v2_fixture();
        let d = tmp.path().join("p");
        fs::create_dir(&d).unwrap();
        let put = |f: &str, s: &str| fs::write(d.join(f), s).unwrap();
        put(
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
        );
        put("memory.current", "8192\n");
        put("memory.max", "65536\n");
        put(
            "memory.stat",
            "anon 4096\nfile 4096\ninactive_file 1024\npgfault 9\npgmajfault 1\n",
        );
        put(
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        put("pids.current", "2\n");
        put("pids.max", "100\n");
        let s = cg.stats("/p").unwrap();
        assert_eq!(
            (s.cpu_usage_ns, s.cpu_user_ns, s.cpu_system_ns),
            (1_500_000, 1_000_000, 500_000)
        );
        assert_eq!(
            (s.memory_usage, s.memory_working_set, s.memory_rss),
            (8192, 7168, 4096)
        );
        assert_eq!(s.memory_limit, Some(65536));
        assert_eq!((s.page_faults, s.major_page_faults), (9, 1));
        assert_eq!((s.pids_current, s.pids_limit), (2, Some(100)));
        assert_eq!(s.oom_kills, 1);
        assert_eq!(cg.oom_kill_files("/p"), [d.join("memory.events")]);
        assert_eq!(read_oom_kills(&d.join("nope")), 0);
    }

    #[test]
    fn shares_map_onto_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn remove_fixture_tree_and_missing_path() {
        // Plain directories stand in for cgroups: rmdir of a fixture
        // cgroup holding files would fail where cgroupfs succeeds.
        let tmp = tempfile::tempdir().unwrap();
        for h in ["memory", "pids"] {
            fs::create_dir(tmp.path().join(h)).unwrap();
        }
        let cg = Cgroups::with_root(CgroupVersion::V1, tmp.path());
        cg.create("/a/b/c").unwrap();
        cg.remove("/a").unwrap();
        assert!(!cg.exists("/a"));
        assert!(!tmp.path().join("memory/a").exists());
        cg.remove("/a").unwrap();
        assert!(cg.remove("/").is_err());
    }
}
