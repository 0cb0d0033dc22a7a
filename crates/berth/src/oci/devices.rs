//! Device rules are enforced before a container exists, or it is not made.
//!
//! On cgroup v1 the devices controller enforces them: berth's own create
//! path writes `devices.allow`/`devices.deny` itself, libcontainer's path
//! through libcgroups. On cgroup v2 nothing does unless a BPF program is
//! attached to the container's cgroup, and libcgroups 0.7 is built without
//! its eBPF device controller (that feature builds libbpf from C), so its
//! v2 manager accepts device rules and enforces none. berth attaches its
//! own program ([`berth_runtime::device_filter`]) once the container's
//! processes sit in their cgroup and before `create` returns, so no
//! process of the container has run a line of its own code unfiltered.
//!
//! Fail closed: a host that offers no way to enforce the rules (no devices
//! controller on v1, a kernel that refuses the program on v2) gets no
//! container, unless its rules allow every device anyway (privileged).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use berth_runtime::cgroup::Cgroups;
use berth_runtime::device_filter::{self, DeviceRules};
use libcontainer::container::Container;
use oci_spec::runtime::Spec;

/// What must happen to a container's device rules on this host.
pub enum DeviceControl {
    /// Nothing left to do: v1's controller enforces them, or there is
    /// nothing to deny.
    Done,
    /// Attach a program with these rules to the v2 cgroup at `root`/…
    Attach { root: PathBuf, rules: DeviceRules },
}

/// Decides, before container `id` is created from the config in `bundle`,
/// how its device rules will be enforced, and refuses when they cannot be.
pub fn prepare(bundle: &Path, id: &str, cgroups: &Cgroups) -> Result<DeviceControl> {
    let spec = Spec::load(bundle.join("config.json"))
        .with_context(|| format!("read the config of container {id}"))?;
    prepare_spec(&spec, id, cgroups)
}

/// [`prepare`] for a caller that has loaded the bundle's config already.
pub fn prepare_spec(spec: &Spec, id: &str, cgroups: &Cgroups) -> Result<DeviceControl> {
    let spec_rules = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    // The spec's rules, then the devices every container gets, as runc.
    let all = spec_rules
        .iter()
        .chain(device_filter::default_rules().iter())
        .cloned()
        .collect::<Vec<_>>();
    let rules = DeviceRules::from_oci(&all).with_context(|| format!("device rules of container {id}"))?;
    if rules.allows_everything() {
        return Ok(DeviceControl::Done);
    }
    match cgroups {
        Cgroups::V1 { .. } if cgroups.has_controller("devices") => Ok(DeviceControl::Done),
        Cgroups::V1 { .. } => bail!(
            "container {id}: its device rules cannot be enforced: this host's cgroup v1 layout has no devices \
             controller mounted; refusing to create a container that is not privileged"
        ),
        Cgroups::V2 { root } => Ok(DeviceControl::Attach {
            root: root.clone(),
            rules,
        }),
    }
}

impl DeviceControl {
    /// Enforces the rules on the created (not yet started) `container`;
    /// on failure the caller must delete it.
    pub fn enforce(&self, container: &Container) -> Result<()> {
        if matches!(self, DeviceControl::Done) {
            return Ok(());
        }
        let id = container.id();
        let pid = container
            .pid()
            .with_context(|| format!("container {id} has no init process"))?;
        let cgroup = v2_cgroup_of(pid.as_raw())
            .with_context(|| format!("find the cgroup of container {id} (init pid {pid})"))?;
        self.enforce_on_cgroup(id, &cgroup)
    }

    /// Enforces the rules on the cgroup this process sits in, which is
    /// container `id`'s (restore joins it before CRIU runs); on failure the
    /// caller must not go on.
    pub fn enforce_on_own_cgroup(&self, id: &str) -> Result<()> {
        if matches!(self, DeviceControl::Done) {
            return Ok(());
        }
        let cgroup = v2_cgroup_of(std::process::id() as i32)
            .with_context(|| format!("find the cgroup of container {id} (this process's)"))?;
        self.enforce_on_cgroup(id, &cgroup)
    }

    /// Enforces the rules on the v2 cgroup at `cgroup` (as /proc/<pid>/cgroup
    /// names it, relative to the hierarchy's root).
    pub fn enforce_on_cgroup(&self, id: &str, cgroup: &str) -> Result<()> {
        let DeviceControl::Attach { root, rules } = self else {
            return Ok(());
        };
        let rel = Path::new(cgroup.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("container {id}: cgroup {cgroup:?} is not a path below the cgroup v2 root");
        }
        let dir = root.join(rel);
        device_filter::attach(&dir, rules).with_context(|| {
            format!(
                "container {id}: its device rules cannot be enforced on this cgroup v2 host; refusing to create a \
                 container that is not privileged"
            )
        })
    }
}

/// The cgroup v2 path of process `pid` (the `0::` line of its cgroup file).
fn v2_cgroup_of(pid: i32) -> Result<String> {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).with_context(|| format!("read {file}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
        .with_context(|| format!("{file} has no cgroup v2 line"))
}
