use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxDeviceType, LinuxNamespaceType, LinuxSeccompAction, PosixRlimitType, Spec,
};

use super::seccomp::{CLONE_NAMESPACE_FLAGS, evaluate};
use super::*;
use crate::model::{
    Device, Mount, MountKind, NamespaceOptions, NsMode, Propagation, Rlimit, Seccomp,
    SupplementalGroupsPolicy,
};

/// One container request with everything it refers to.
struct Fixture {
    rootfs: tempfile::TempDir,
    pod: PodConfig,
    ctr: ContainerConfig,
    image: ImageRun,
    ns: PodNamespacePaths,
    files: PodFiles,
    host: HostInfo,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            rootfs: tempfile::tempdir().unwrap(),
            pod: PodConfig {
                name: "web".into(),
                namespaces: NamespaceOptions::kubernetes(),
                ..Default::default()
            },
            ctr: ContainerConfig {
                name: "app".into(),
                command: vec!["/bin/sh".into()],
                ..Default::default()
            },
            image: ImageRun::default(),
            ns: PodNamespacePaths {
                net: Some("/run/berth/ns/web/net".into()),
                ipc: Some("/run/berth/ns/web/ipc".into()),
                uts: Some("/run/berth/ns/web/uts".into()),
                pid: Some("/proc/4242/ns/pid".into()),
                target_pid: None,
                user: None,
            },
            files: PodFiles::default(),
            host: HostInfo::unrestricted(false),
        }
    }

    fn generate(&self) -> Result<Generated, SpecError> {
        let input = SpecInput {
            id: "c1",
            pod: &self.pod,
            container: &self.ctr,
            image: &self.image,
            rootfs: self.rootfs.path(),
            cgroups_path: "/berth/web/app",
            pod_namespaces: &self.ns,
            pod_files: &self.files,
        };
        generate_with(&input, &self.host)
    }

    fn spec(&self) -> Spec {
        self.generate().unwrap().spec
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.rootfs.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn with_accounts(self) -> Fixture {
        self.write(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\n\
             app:x:1000:1000::/home/app:/bin/sh\n\
             other:x:2000:2001::/:/bin/false\n",
        );
        self.write(
            "etc/group",
            "root:x:0:\nstaff:x:50:\napp:x:1000:\n\
             extra:x:3000:app,other\nmore:x:3001:app\n",
        );
        self
    }
}

fn cap_names(set: &Option<HashSet<Capability>>) -> BTreeSet<String> {
    set.as_ref()
        .unwrap()
        .iter()
        .map(|c| c.to_string().trim_start_matches("CAP_").to_string())
        .collect()
}

fn defaults() -> BTreeSet<String> {
    DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
}

fn caps_of(spec: &Spec) -> oci_spec::runtime::LinuxCapabilities {
    spec.process().as_ref().unwrap().capabilities().clone().unwrap()
}

fn linux(spec: &Spec) -> &oci_spec::runtime::Linux {
    spec.linux().as_ref().unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn default_spec_has_the_default_capabilities_paths_and_no_seccomp_unless_asked() {
    let f = Fixture::new();
    let spec = f.spec();
    let caps = caps_of(&spec);
    assert_eq!(cap_names(caps.bounding()), defaults());
    assert_eq!(cap_names(caps.effective()), defaults());
    assert_eq!(cap_names(caps.permitted()), defaults());
    assert!(caps.inheritable().as_ref().unwrap().is_empty());
    assert!(caps.ambient().as_ref().unwrap().is_empty());
    let l = linux(&spec);
    assert_eq!(
        l.masked_paths().as_ref().unwrap(),
        &strings(&DEFAULT_MASKED_PATHS)
    );
    assert_eq!(
        l.readonly_paths().as_ref().unwrap(),
        &strings(&DEFAULT_READONLY_PATHS)
    );
    // CRI's default when nothing is said is Unconfined.
    assert!(l.seccomp().is_none());
    assert_eq!(spec.process().as_ref().unwrap().no_new_privileges(), None);
    assert_eq!(l.cgroups_path().as_deref(), Some(Path::new("/berth/web/app")));
    assert_eq!(spec.hostname().as_deref(), Some("web"));
    assert_eq!(spec.root().as_ref().unwrap().path(), f.rootfs.path());
}

#[test]
fn cgroup_v1_hierarchies_are_read_only_unless_privileged() {
    let mut f = Fixture::new();
    f.host.cgroup_v1_hierarchies = strings(&["cpu,cpuacct", "systemd"]);
    let readonly = |f: &Fixture| linux(&f.spec()).readonly_paths().clone().unwrap();
    let mut want = strings(&DEFAULT_READONLY_PATHS);
    want.extend(strings(&["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/systemd"]));
    assert_eq!(readonly(&f), want);
    // A request's own read-only paths (even none) do not drop them.
    f.ctr.security.readonly_paths = Some(Vec::new());
    assert_eq!(readonly(&f).len(), 2);
    f.ctr.security.readonly_paths = None;
    f.host.cgroup_v2 = true;
    assert_eq!(readonly(&f), strings(&DEFAULT_READONLY_PATHS));
    f.host.cgroup_v2 = false;
    f.ctr.security.privileged = true;
    f.pod.privileged = true;
    assert!(readonly(&f).is_empty());
}

#[test]
fn runtime_default_seccomp_is_applied_from_container_or_pod() {
    let mut f = Fixture::new();
    f.pod.seccomp = Some(Seccomp::RuntimeDefault);
    let spec = f.spec();
    let sc = linux(&spec).seccomp().clone().unwrap();
    assert_eq!(sc.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(sc.default_errno_ret(), Some(1));
    assert!(sc.architectures().as_ref().unwrap().len() >= 2);
    // The container's own choice overrides the pod's.
    f.ctr.security.seccomp = Some(Seccomp::Unconfined);
    assert!(linux(&f.spec()).seccomp().is_none());
}

#[test]
fn capabilities_add_drop_and_all() {
    let mut f = Fixture::new();
    f.ctr.security.add_capabilities = strings(&["sys_admin", "CAP_NET_ADMIN"]);
    f.ctr.security.drop_capabilities = strings(&["chown", "cap_kill"]);
    let got = cap_names(caps_of(&f.spec()).effective());
    let mut want = defaults();
    want.extend(["SYS_ADMIN".to_string(), "NET_ADMIN".to_string()]);
    want.remove("CHOWN");
    want.remove("KILL");
    assert_eq!(got, want);

    f.ctr.security.add_capabilities = strings(&["ALL"]);
    f.ctr.security.drop_capabilities = strings(&["Mknod"]);
    let got = cap_names(caps_of(&f.spec()).bounding());
    assert_eq!(got.len(), ALL_CAPABILITIES.len() - 1);
    assert!(!got.contains("MKNOD"));

    f.ctr.security.add_capabilities = strings(&["NET_BIND_SERVICE"]);
    f.ctr.security.drop_capabilities = strings(&["all"]);
    let got = cap_names(caps_of(&f.spec()).permitted());
    assert_eq!(got, BTreeSet::from(["NET_BIND_SERVICE".to_string()]));

    f.ctr.security.add_capabilities = strings(&["CAP_FLY"]);
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::UnknownCapability { .. }));
    assert!(err.to_string().contains("CAP_FLY"), "{err}");
}

#[test]
fn all_stops_at_the_kernels_last_capability() {
    let mut f = Fixture::new();
    f.host.cap_last_cap = 37;
    f.ctr.security.add_capabilities = strings(&["ALL"]);
    let got = cap_names(caps_of(&f.spec()).effective());
    assert_eq!(got.len(), 38);
    assert!(!got.contains("BPF"));
}

#[test]
fn privileged_gets_everything_and_no_confinement() {
    let mut f = Fixture::new();
    f.ctr.security.privileged = true;
    f.ctr.security.seccomp = Some(Seccomp::RuntimeDefault);
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::PrivilegedNotAllowed { .. }), "{err}");

    f.pod.privileged = true;
    let spec = f.spec();
    assert_eq!(
        cap_names(caps_of(&spec).effective()).len(),
        ALL_CAPABILITIES.len()
    );
    let l = linux(&spec);
    assert!(l.seccomp().is_none());
    assert!(l.masked_paths().as_ref().unwrap().is_empty());
    assert!(l.readonly_paths().as_ref().unwrap().is_empty());
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
    let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    assert_eq!(rules[0].typ(), Some(LinuxDeviceType::A));
    // Host devices: /dev/null at least.
    assert!(
        l.devices()
            .as_ref()
            .unwrap()
            .iter()
            .any(|d| d.path() == Path::new("/dev/null"))
    );
}

fn user_of(f: &Fixture) -> (u32, u32, Vec<u32>) {
    let spec = f.spec();
    let u = spec.process().as_ref().unwrap().user().clone();
    (u.uid(), u.gid(), u.additional_gids().clone().unwrap())
}

#[test]
fn user_from_image_by_name_uid_and_group() {
    let mut f = Fixture::new().with_accounts();
    assert_eq!(user_of(&f), (0, 0, vec![0]));
    f.image.user = Some("app".into());
    assert_eq!(user_of(&f), (1000, 1000, vec![1000, 3000, 3001]));
    f.image.user = Some("1000".into());
    assert_eq!(user_of(&f), (1000, 1000, vec![1000, 3000, 3001]));
    f.image.user = Some("app:staff".into());
    assert_eq!(user_of(&f), (1000, 50, vec![50, 3000, 3001]));
    f.image.user = Some("2000:7".into());
    assert_eq!(user_of(&f), (2000, 7, vec![7, 3000]));
    f.image.user = Some("4242".into());
    assert_eq!(user_of(&f), (4242, 0, vec![0]));
}

#[test]
fn user_from_request_overrides_image_and_adds_supplementary_groups() {
    let mut f = Fixture::new().with_accounts();
    f.image.user = Some("app".into());
    f.ctr.security.run_as_username = Some("other".into());
    assert_eq!(user_of(&f), (2000, 2001, vec![2001, 3000]));
    f.ctr.security.run_as_username = None;
    f.ctr.security.run_as_user = Some(1000);
    f.ctr.security.run_as_group = Some(1000);
    f.ctr.security.supplemental_groups = vec![3000, 9];
    f.pod.supplemental_groups = vec![9, 10];
    assert_eq!(user_of(&f), (1000, 1000, vec![1000, 3000, 3001, 9, 10]));
    // Pod-level user when the container says nothing.
    f.ctr.security = Default::default();
    f.pod.run_as_user = Some(2000);
    f.pod.supplemental_groups.clear();
    assert_eq!(user_of(&f), (2000, 2001, vec![2001, 3000]));
}

#[test]
fn strict_supplemental_groups_policy_ignores_the_images_group_file() {
    let mut f = Fixture::new().with_accounts();
    f.ctr.security.run_as_user = Some(1000);
    f.ctr.security.supplemental_groups = vec![1234];
    assert_eq!(user_of(&f), (1000, 1000, vec![1000, 3000, 3001, 1234]));
    f.ctr.security.supplemental_groups_policy = SupplementalGroupsPolicy::Strict;
    assert_eq!(user_of(&f), (1000, 1000, vec![1000, 1234]));
    // The primary group still comes from /etc/passwd.
    f.ctr.security.supplemental_groups.clear();
    assert_eq!(user_of(&f), (1000, 1000, vec![1000]));
}

#[test]
fn unknown_user_or_group_is_an_error_naming_it() {
    let mut f = Fixture::new().with_accounts();
    f.image.user = Some("ghost".into());
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::UnknownUser { .. }));
    assert!(err.to_string().contains("ghost"), "{err}");
    f.image.user = Some("app:phantoms".into());
    let err = f.generate().unwrap_err();
    assert!(err.to_string().contains("phantoms"), "{err}");
    f.image.user = Some("app:".into());
    assert!(matches!(f.generate().unwrap_err(), SpecError::BadUserSpec { .. }));
}

#[test]
fn numeric_user_without_passwd_is_fine() {
    let mut f = Fixture::new();
    f.ctr.security.run_as_user = Some(65534);
    assert_eq!(user_of(&f), (65534, 0, vec![0]));
    f.ctr.security.run_as_user = None;
    f.ctr.security.run_as_username = Some("app".into());
    assert!(matches!(f.generate().unwrap_err(), SpecError::UnknownUser { .. }));
}

#[test]
fn passwd_symlinked_out_of_the_rootfs_does_not_read_the_host_file() {
    let outside = tempfile::tempdir().unwrap();
    let host_passwd = outside.path().join("passwd");
    std::fs::write(&host_passwd, "hostonly:x:777:777::/:/bin/sh\n").unwrap();
    let mut f = Fixture::new();
    std::fs::create_dir_all(f.rootfs.path().join("etc")).unwrap();
    std::os::unix::fs::symlink(&host_passwd, f.rootfs.path().join("etc/passwd")).unwrap();
    f.ctr.security.run_as_username = Some("hostonly".into());
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::UnknownUser { .. }), "{err}");

    // A relative escape is clamped at the rootfs' / just the same.
    let rel = Path::new("../../../../../../../..").join(host_passwd.strip_prefix("/").unwrap());
    std::fs::remove_file(f.rootfs.path().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink(&rel, f.rootfs.path().join("etc/passwd")).unwrap();
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::UnknownUser { .. }), "{err}");

    // Sanity: the same file inside the rootfs is read.
    std::fs::remove_file(f.rootfs.path().join("etc/passwd")).unwrap();
    std::fs::copy(&host_passwd, f.rootfs.path().join("etc/passwd")).unwrap();
    assert_eq!(user_of(&f).0, 777);
}

#[test]
fn command_args_entrypoint_cmd_follow_kubernetes_rules() {
    let v = |s: &[&str]| strings(s);
    /// command, args, entrypoint, cmd => argv
    type Case<'a> = [&'a [&'a str]; 5];
    let cases: &[Case] = &[
        [&[], &[], &["/ep"], &["c1"], &["/ep", "c1"]],
        [&["/cmd"], &[], &["/ep"], &["c1"], &["/cmd"]],
        [&["/cmd"], &["a1"], &["/ep"], &["c1"], &["/cmd", "a1"]],
        [&[], &["a1"], &["/ep"], &["c1"], &["/ep", "a1"]],
        [&[], &["/a0", "a1"], &[], &["c1"], &["/a0", "a1"]],
        [&[], &[], &[], &["/c0"], &["/c0"]],
    ];
    for [command, args, ep, cmd, want] in cases {
        let mut f = Fixture::new();
        f.ctr.command = v(command);
        f.ctr.args = v(args);
        f.image.entrypoint = v(ep);
        f.image.cmd = v(cmd);
        let spec = f.spec();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap(),
            &v(want),
            "command {command:?} args {args:?} entrypoint {ep:?} cmd {cmd:?}"
        );
    }
    let mut f = Fixture::new();
    f.ctr.command.clear();
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::NoCommand { .. }));
    assert!(err.to_string().contains("app"), "{err}");
}

#[test]
fn env_merges_path_hostname_image_and_request() {
    let mut f = Fixture::new();
    f.image.env = strings(&["PATH=/image/bin", "A=image", "B=image"]);
    f.ctr.env = strings(&["B=request", "C=request", "A"]);
    let spec = f.spec();
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(
        env,
        strings(&["PATH=/image/bin", "HOSTNAME=web", "B=request", "C=request"])
    );
    f.image.env.clear();
    f.ctr.env.clear();
    let env = f.spec().process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(env[0], process::DEFAULT_PATH);
}

#[test]
fn cwd_and_terminal() {
    let mut f = Fixture::new();
    assert_eq!(f.spec().process().as_ref().unwrap().cwd(), Path::new("/"));
    f.image.working_dir = Some("/srv".into());
    f.ctr.tty = true;
    let spec = f.spec();
    assert_eq!(spec.process().as_ref().unwrap().cwd(), Path::new("/srv"));
    assert_eq!(spec.process().as_ref().unwrap().terminal(), Some(true));
    f.ctr.working_dir = Some("rel".into());
    assert!(matches!(
        f.generate().unwrap_err(),
        SpecError::RelativeWorkingDir { .. }
    ));
}

fn bind(dest: &str, src: &str) -> Mount {
    Mount {
        destination: dest.into(),
        kind: MountKind::Bind(src.into()),
        readonly: false,
        propagation: Propagation::Private,
        size: 0,
        recursive_readonly: false,
    }
}

#[test]
fn recursive_readonly_bind_gets_rro() {
    let mut f = Fixture::new();
    f.ctr.mounts = vec![
        Mount {
            readonly: true,
            recursive_readonly: true,
            ..bind("/rro", "/host/rro")
        },
        Mount {
            readonly: true,
            ..bind("/ro", "/host/ro")
        },
    ];
    let spec = f.spec();
    let opts = |dest| mount_of(&spec, dest).options().clone().unwrap();
    assert_eq!(opts("/rro"), ["rbind", "rprivate", "ro", "rro"]);
    assert_eq!(opts("/ro"), ["rbind", "rprivate", "ro"]);
}

fn mount_of<'s>(spec: &'s Spec, dest: &str) -> &'s oci_spec::runtime::Mount {
    spec.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new(dest))
        .unwrap_or_else(|| panic!("no mount at {dest}"))
}

#[test]
fn mounts_have_defaults_pod_files_and_request_parents_first() {
    let mut f = Fixture::new();
    f.files.hosts = Some("/run/berth/pods/web/hosts".into());
    f.files.resolv_conf = Some("/run/berth/pods/web/resolv.conf".into());
    f.files.hostname = Some("/run/berth/pods/web/hostname".into());
    f.files.shm = Some("/run/berth/pods/web/shm".into());
    f.ctr.mounts = vec![
        bind("/data/cache/deep", "/host/deep"),
        Mount {
            propagation: Propagation::HostToContainer,
            readonly: true,
            ..bind("/data", "/host/data")
        },
        Mount {
            kind: MountKind::Tmpfs,
            size: 1 << 20,
            ..bind("/scratch", "/unused")
        },
        bind("/etc/resolv.conf", "/host/resolv.conf"),
    ];
    let spec = f.spec();
    let mounts = spec.mounts().as_ref().unwrap();
    let dests: Vec<&Path> = mounts.iter().map(|m| m.destination().as_path()).collect();
    for (i, d) in dests.iter().enumerate() {
        for later in &dests[i + 1..] {
            assert!(
                !d.starts_with(later) || d == later,
                "{later:?} is a parent of {d:?} but comes after it: {dests:?}"
            );
        }
    }
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
        "/etc/hosts",
        "/etc/hostname",
    ] {
        mount_of(&spec, d);
    }
    let sys = mount_of(&spec, "/sys");
    assert!(sys.options().as_ref().unwrap().contains(&"ro".into()));
    let cg = mount_of(&spec, "/sys/fs/cgroup");
    assert!(cg.options().as_ref().unwrap().contains(&"ro".into()));
    // The request's mount replaces the pod's file of the same destination.
    let resolv: Vec<_> = mounts
        .iter()
        .filter(|m| m.destination() == Path::new("/etc/resolv.conf"))
        .collect();
    assert_eq!(resolv.len(), 1);
    assert_eq!(
        resolv[0].source().as_deref(),
        Some(Path::new("/host/resolv.conf"))
    );
    let shm = mount_of(&spec, "/dev/shm");
    assert_eq!(
        shm.source().as_deref(),
        Some(Path::new("/run/berth/pods/web/shm"))
    );
    let data = mount_of(&spec, "/data");
    assert_eq!(data.typ().as_deref(), Some("bind"));
    assert_eq!(
        data.options().as_ref().unwrap(),
        &strings(&["rbind", "rslave", "ro"])
    );
    let scratch = mount_of(&spec, "/scratch");
    assert_eq!(scratch.typ().as_deref(), Some("tmpfs"));
    assert!(
        scratch
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=1048576".into())
    );
    assert_eq!(linux(&spec).rootfs_propagation().as_deref(), Some("rslave"));
}

#[test]
fn shm_is_private_without_the_pods_and_bad_destinations_are_refused() {
    let mut f = Fixture::new();
    let spec = f.spec();
    let shm = mount_of(&spec, "/dev/shm");
    assert_eq!(shm.typ().as_deref(), Some("tmpfs"));
    assert!(shm.options().as_ref().unwrap().contains(&"size=65536k".into()));
    for bad in ["data", "/data/../etc", "../x"] {
        f.ctr.mounts = vec![bind(bad, "/host")];
        let err = f.generate().unwrap_err();
        assert!(
            matches!(err, SpecError::BadMountDestination { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(bad), "{err}");
    }
    f.ctr.mounts = vec![bind("/data", "relative/src")];
    assert!(matches!(
        f.generate().unwrap_err(),
        SpecError::BadMountSource { .. }
    ));
}

fn namespaces_of(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    linux(spec)
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

#[test]
fn namespaces_follow_the_modes() {
    let mut f = Fixture::new();
    let ns = namespaces_of(&f.spec());
    assert_eq!(
        ns,
        vec![
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Network, Some("/run/berth/ns/web/net".into())),
            (LinuxNamespaceType::Ipc, Some("/run/berth/ns/web/ipc".into())),
            (LinuxNamespaceType::Uts, Some("/run/berth/ns/web/uts".into())),
            (LinuxNamespaceType::Pid, None),
        ]
    );
    f.host.cgroup_v2 = true;
    assert!(namespaces_of(&f.spec()).contains(&(LinuxNamespaceType::Cgroup, None)));

    f.pod.namespaces = NamespaceOptions {
        network: NsMode::Node,
        pid: NsMode::Pod,
        ipc: NsMode::Node,
        target_id: None,
    };
    let spec = f.spec();
    let ns = namespaces_of(&spec);
    let kinds: Vec<_> = ns.iter().map(|n| n.0).collect();
    assert!(!kinds.contains(&LinuxNamespaceType::Network));
    assert!(!kinds.contains(&LinuxNamespaceType::Uts));
    assert!(!kinds.contains(&LinuxNamespaceType::Ipc));
    assert!(ns.contains(&(LinuxNamespaceType::Pid, Some("/proc/4242/ns/pid".into()))));
    assert_eq!(spec.hostname(), &None);
    assert_eq!(
        mount_of(&spec, "/dev/shm").source().as_deref(),
        Some(Path::new("/dev/shm"))
    );

    f.ns.pid = None;
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::MissingNamespacePath { kind: "pid", .. }));

    f.pod.namespaces.pid = NsMode::Target;
    assert!(matches!(
        f.generate().unwrap_err(),
        SpecError::MissingTargetNamespace { .. }
    ));
    f.ns.target_pid = Some("/proc/99/ns/pid".into());
    assert!(namespaces_of(&f.spec()).contains(&(LinuxNamespaceType::Pid, Some("/proc/99/ns/pid".into()))));

    // The container's own options win over the pod's.
    f.ctr.security.namespaces = Some(NamespaceOptions {
        network: NsMode::Container,
        pid: NsMode::Container,
        ipc: NsMode::Container,
        target_id: None,
    });
    f.pod.hostname = Some("custom".into());
    let spec = f.spec();
    assert!(namespaces_of(&spec).iter().all(|(_, p)| p.is_none()));
    assert_eq!(spec.hostname().as_deref(), Some("custom"));
}

#[test]
fn oom_score_adj_is_clamped_to_berths_own() {
    let mut f = Fixture::new();
    f.host.oom_score_adj = 0;
    f.ctr.resources.oom_score_adj = Some(-500);
    let g = f.generate().unwrap();
    assert_eq!(g.spec.process().as_ref().unwrap().oom_score_adj(), Some(0));
    assert_eq!(g.warnings.len(), 1);
    assert!(g.warnings[0].contains("-500"), "{:?}", g.warnings);
    f.ctr.resources.oom_score_adj = Some(500);
    let g = f.generate().unwrap();
    assert_eq!(g.spec.process().as_ref().unwrap().oom_score_adj(), Some(500));
    assert!(g.warnings.is_empty());
}

#[test]
fn rlimits_are_parsed_and_clamped_to_berths_hard_limit() {
    let mut f = Fixture::new();
    f.host.rlimit_hard[host::rlimit_index(PosixRlimitType::RlimitNofile)] = Some(20000);
    f.ctr.rlimits = vec![
        Rlimit {
            kind: "RLIMIT_NOFILE".into(),
            soft: 1 << 20,
            hard: 1 << 20,
        },
        Rlimit {
            kind: "nproc".into(),
            soft: 100,
            hard: 200,
        },
    ];
    let g = f.generate().unwrap();
    let rl = g.spec.process().as_ref().unwrap().rlimits().clone().unwrap();
    assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
    assert_eq!((rl[0].soft(), rl[0].hard()), (20000, 20000));
    assert_eq!(rl[1].typ(), PosixRlimitType::RlimitNproc);
    assert_eq!((rl[1].soft(), rl[1].hard()), (100, 200));
    assert_eq!(g.warnings.len(), 1, "{:?}", g.warnings);

    f.ctr.rlimits = vec![Rlimit {
        kind: "nofiles".into(),
        soft: 1,
        hard: 1,
    }];
    let err = f.generate().unwrap_err();
    assert!(err.to_string().contains("nofiles"), "{err}");
    f.ctr.rlimits = vec![Rlimit {
        kind: "core".into(),
        soft: 2,
        hard: 1,
    }];
    assert!(matches!(
        f.generate().unwrap_err(),
        SpecError::RlimitSoftAboveHard { .. }
    ));
}

#[test]
fn sysctls_must_be_namespaced_and_not_the_hosts() {
    let mut f = Fixture::new();
    f.pod.sysctls = BTreeMap::from([
        ("net.ipv4.ip_unprivileged_port_start".into(), "0".into()),
        ("kernel.shmmax".into(), "1".into()),
    ]);
    f.ctr.sysctls = BTreeMap::from([("kernel.shmmax".into(), "2".into())]);
    let spec = f.spec();
    let s = linux(&spec).sysctl().clone().unwrap();
    assert_eq!(s["kernel.shmmax"], "2");
    assert_eq!(s["net.ipv4.ip_unprivileged_port_start"], "0");

    f.pod.namespaces.network = NsMode::Node;
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::SysctlHostNamespace { .. }));
    assert!(err.to_string().contains("net.ipv4.ip_unprivileged_port_start"));

    f.pod.namespaces.network = NsMode::Pod;
    f.ctr.sysctls = BTreeMap::from([("kernel.panic".into(), "1".into())]);
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::SysctlNotNamespaced { .. }));
    assert!(err.to_string().contains("kernel.panic"));

    f.ctr.sysctls = BTreeMap::from([("kernel/hostname".into(), "x".into())]);
    assert!(matches!(
        f.generate().unwrap_err(),
        SpecError::SysctlHostname { .. }
    ));
    f.ctr.sysctls = BTreeMap::from([("kernel.domainname".into(), "example".into())]);
    f.generate().unwrap();

    f.ctr.sysctls.clear();
    f.pod.namespaces.ipc = NsMode::Node;
    assert!(matches!(
        f.generate().unwrap_err(),
        SpecError::SysctlHostNamespace { namespace: "ipc", .. }
    ));
}

#[test]
fn localhost_profiles_are_read_or_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::new();
    let missing = dir.path().join("missing.json");
    f.ctr.security.seccomp = Some(Seccomp::Localhost(missing.clone()));
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::SeccompProfileRead { .. }));
    assert!(err.to_string().contains(missing.to_str().unwrap()));

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"defaultAction\": 42").unwrap();
    f.ctr.security.seccomp = Some(Seccomp::Localhost(bad.clone()));
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::SeccompProfileParse { .. }));
    assert!(err.to_string().contains(bad.to_str().unwrap()));

    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    f.ctr.security.seccomp = Some(Seccomp::Localhost(good));
    let spec = f.spec();
    let sc = linux(&spec).seccomp().clone().unwrap();
    assert_eq!(sc.default_action(), LinuxSeccompAction::ScmpActLog);
}

fn profile(f: &Fixture) -> oci_spec::runtime::LinuxSeccomp {
    linux(&f.spec()).seccomp().clone().unwrap()
}

const CLONE_THREAD_FLAGS: u64 = 0x003d_0f00;
const CLONE_NEWUSER: u64 = 0x1000_0000;

#[test]
fn runtime_default_refuses_namespace_clones_and_dangerous_calls() {
    let mut f = Fixture::new();
    f.ctr.security.seccomp = Some(Seccomp::RuntimeDefault);
    let p = profile(&f);
    let allow = LinuxSeccompAction::ScmpActAllow;
    let errno = LinuxSeccompAction::ScmpActErrno;
    for call in [
        "read",
        "write",
        "openat",
        "execve",
        "mmap",
        "futex",
        "exit_group",
        "socket",
        "chroot",
    ] {
        assert_eq!(evaluate(&p, call, &[]).0, allow, "{call}");
    }
    assert_eq!(evaluate(&p, "clone", &[CLONE_THREAD_FLAGS]).0, allow);
    assert_eq!(evaluate(&p, "clone", &[0x11]).0, allow, "fork-like clone");
    assert_eq!(
        evaluate(&p, "clone", &[CLONE_THREAD_FLAGS | CLONE_NEWUSER]),
        (errno, 1)
    );
    for flag in [
        0x20000u64,
        0x0200_0000,
        0x0400_0000,
        0x0800_0000,
        0x2000_0000,
        0x4000_0000,
    ] {
        assert_eq!(CLONE_NAMESPACE_FLAGS & flag, flag);
        assert_eq!(evaluate(&p, "clone", &[flag]), (errno, 1), "{flag:#x}");
    }
    assert_eq!(evaluate(&p, "clone3", &[]), (errno, 38));
    assert_eq!(evaluate(&p, "personality", &[0]).0, allow);
    assert_eq!(evaluate(&p, "personality", &[0xffff_ffff]).0, allow);
    assert_eq!(evaluate(&p, "personality", &[0x0040_0000]), (errno, 1));
    for call in [
        "mount",
        "umount2",
        "reboot",
        "kexec_load",
        "init_module",
        "bpf",
        "ptrace",
        "keyctl",
        "add_key",
        "unshare",
        "setns",
        "open_by_handle_at",
        "perf_event_open",
        "swapon",
        "settimeofday",
        "io_uring_setup",
        "pivot_root",
    ] {
        assert_eq!(evaluate(&p, call, &[]), (errno, 1), "{call}");
    }
}

#[test]
fn runtime_default_allows_what_an_added_capability_covers() {
    let mut f = Fixture::new();
    f.ctr.security.seccomp = Some(Seccomp::RuntimeDefault);
    f.ctr.security.add_capabilities = strings(&["SYS_ADMIN", "SYS_PTRACE", "SYS_TIME"]);
    f.ctr.security.drop_capabilities = strings(&["SYS_CHROOT"]);
    let p = profile(&f);
    let allow = LinuxSeccompAction::ScmpActAllow;
    for call in ["mount", "setns", "unshare", "ptrace", "settimeofday", "clone3"] {
        assert_eq!(evaluate(&p, call, &[]).0, allow, "{call}");
    }
    assert_eq!(evaluate(&p, "clone", &[CLONE_NEWUSER]).0, allow);
    assert_eq!(evaluate(&p, "chroot", &[]).0, LinuxSeccompAction::ScmpActErrno);
    assert_eq!(
        evaluate(&p, "init_module", &[]).0,
        LinuxSeccompAction::ScmpActErrno
    );
}

#[test]
fn devices_are_denied_except_defaults_and_requested() {
    let mut f = Fixture::new();
    f.ctr.devices = vec![Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let spec = f.spec();
    let l = linux(&spec);
    let dev = &l.devices().as_ref().unwrap()[0];
    assert_eq!(dev.path(), Path::new("/dev/mynull"));
    assert_eq!((dev.typ(), dev.major(), dev.minor()), (LinuxDeviceType::C, 1, 3));
    let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
    assert!(!rules[0].allow());
    assert_eq!(rules[0].typ(), Some(LinuxDeviceType::A));
    let allowed: Vec<_> = rules
        .iter()
        .filter(|r| r.allow() && r.access().as_deref() == Some("rwm"))
        .map(|r| (r.major(), r.minor()))
        .collect();
    for want in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
    ] {
        assert!(allowed.contains(&(Some(want.0), want.1)), "{want:?}");
    }
    assert!(allowed.contains(&(Some(5), Some(2))), "ptmx");
    assert!(allowed.contains(&(Some(136), None)), "pts");
    let last = rules.last().unwrap();
    assert_eq!(last.access().as_deref(), Some("rw"));

    f.ctr.devices[0].host_path = "/dev/no-such-device".into();
    let err = f.generate().unwrap_err();
    assert!(err.to_string().contains("/dev/no-such-device"), "{err}");
    f.ctr.devices[0].host_path = "/etc/hostname".into();
    assert!(matches!(f.generate().unwrap_err(), SpecError::NotADevice { .. }));
}

#[test]
fn resources_map_to_linux_resources() {
    let mut f = Fixture::new();
    // `unified` exists on cgroup v2 only.
    f.host = HostInfo::unrestricted(true);
    f.ctr.resources = crate::model::Resources {
        memory_limit: 64 << 20,
        cpu_shares: 512,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        cpuset_cpus: "0".into(),
        pids_limit: 100,
        hugepage_limits: BTreeMap::from([("2MB".into(), 4 << 20)]),
        unified: BTreeMap::from([("memory.high".into(), "1000000".into())]),
        ..Default::default()
    };
    let spec = f.spec();
    let r = linux(&spec).resources().clone().unwrap();
    assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
    let cpu = r.cpu().clone().unwrap();
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!(cpu.quota(), Some(50_000));
    assert_eq!(cpu.period(), Some(100_000));
    assert_eq!(cpu.cpus().as_deref(), Some("0"));
    assert_eq!(r.pids().unwrap().limit(), 100);
    assert_eq!(r.hugepage_limits().as_ref().unwrap()[0].page_size(), "2MB");
    assert_eq!(r.unified().as_ref().unwrap()["memory.high"], "1000000");
}

#[test]
fn resources_the_host_cannot_enforce_are_dropped_or_refused() {
    let mut f = Fixture::new();
    f.host.cgroup_controllers.retain(|c| c != "hugetlb");
    f.ctr.resources.hugepage_limits = BTreeMap::from([("2MB".into(), 0)]);
    f.ctr.resources.memory_limit = 64 << 20;
    let r = linux(&f.spec()).resources().clone().unwrap();
    assert!(r.hugepage_limits().is_none(), "{r:?}");
    assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
    f.ctr.resources.hugepage_limits.insert("2MB".into(), 2 << 20);
    assert!(matches!(
        f.generate().unwrap_err(),
        SpecError::MissingController { controller, .. } if controller == "hugetlb"
    ));
}

#[test]
fn spec_serializes_and_reads_back() {
    let mut f = Fixture::new().with_accounts();
    f.ctr.security.seccomp = Some(Seccomp::RuntimeDefault);
    f.ctr.security.no_new_privs = true;
    let spec = f.spec();
    let json = serde_json::to_string(&spec).unwrap();
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    assert!(json.contains("\"noNewPrivileges\":true"));
    assert!(json.contains("\"defaultErrnoRet\":1"));
}

#[test]
fn apparmor_profiles_apply_only_where_the_host_has_apparmor() {
    let mut f = Fixture::new();
    f.ctr.security.apparmor = Some("localhost/my-profile".into());
    let g = f.generate().unwrap();
    assert_eq!(g.spec.process().as_ref().unwrap().apparmor_profile(), &None);
    assert!(g.warnings[0].contains("my-profile"), "{:?}", g.warnings);
    f.host.apparmor = true;
    let g = f.generate().unwrap();
    assert_eq!(
        g.spec.process().as_ref().unwrap().apparmor_profile().as_deref(),
        Some("my-profile")
    );
    f.ctr.security.apparmor = Some("runtime/default".into());
    let g = f.generate().unwrap();
    assert_eq!(g.spec.process().as_ref().unwrap().apparmor_profile(), &None);
    assert!(g.warnings.is_empty());
}

#[test]
fn annotations_name_the_pod_and_container() {
    let mut f = Fixture::new();
    f.ctr.annotations = BTreeMap::from([("team".into(), "blue".into())]);
    f.pod.k8s_namespace = "prod".into();
    let spec = f.spec();
    let a = spec.annotations().clone().unwrap();
    assert_eq!(a["team"], "blue");
    assert_eq!(a["io.kubernetes.cri.sandbox-name"], "web");
    assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "prod");
    assert_eq!(a["io.kubernetes.cri.container-name"], "app");
    assert_eq!(a["io.berth.container-id"], "c1");
}

#[test]
fn a_fifo_as_passwd_is_refused_without_hanging() {
    let mut f = Fixture::new();
    std::fs::create_dir_all(f.rootfs.path().join("etc")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        f.rootfs.path().join("etc/passwd"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    f.image.user = Some("app".into());
    let err = f.generate().unwrap_err();
    assert!(matches!(err, SpecError::ReadRootfsFile { .. }), "{err}");
    assert!(err.to_string().contains("/etc/passwd"), "{err}");
}
