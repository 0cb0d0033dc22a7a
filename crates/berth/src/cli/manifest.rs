//! `berth run -f pod.yaml`: a Kubernetes Pod manifest mapped onto berth's pod
//! model, so a pod written for a cluster runs on one machine as it is.
//!
//! Only the subset of the Pod API that berth can honour is typed here (no
//! k8s-openapi: its compile time dwarfs the rest of the CLI). Unknown fields
//! are ignored because real manifests carry many that do not matter on one
//! machine (scheduling, service accounts…); the ones that would change what
//! the pod does are typed as "present or not" and reported as warnings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use berth_runtime::model::{
    ContainerConfig, DnsConfig, Mount, MountKind, NamespaceOptions, NsMode, PodConfig, PortMapping,
    Propagation, Resources, Seccomp, SecurityContext,
};
use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer};

/// A Pod manifest as berth will run it.
#[derive(Debug)]
pub struct PodManifest {
    pub pod: PodConfig,
    pub init_containers: Vec<ContainerConfig>,
    pub containers: Vec<ContainerConfig>,
    /// Disk-backed emptyDir volumes: directories the caller creates before
    /// start (`prepare_host_paths` does). Memory-backed ones are tmpfs mounts
    /// in the containers and do not appear here.
    pub empty_dirs: Vec<EmptyDir>,
    /// hostPath volumes with the check or creation their `type` asks for.
    pub host_paths: Vec<HostPathVolume>,
    /// Directories below a volume that subPath mounts bind, created as the
    /// kubelet does when missing.
    pub sub_paths: Vec<SubPathDir>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmptyDir {
    pub name: String,
    pub path: PathBuf,
    /// Bytes; on disk the kubelet enforces it by eviction, which berth lacks.
    pub size_limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPathVolume {
    pub name: String,
    pub path: PathBuf,
    pub kind: HostPathType,
}

/// `spec.volumes[].hostPath.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check, as Kubernetes.
    Unchecked,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubPathDir {
    pub volume: String,
    /// The volume's host directory; `path` must stay below it.
    pub base: PathBuf,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// serde_norway's message carries the field path and line/column.
    #[error("pod manifest: {0}")]
    Yaml(String),
    #[error("pod manifest: no Pod found (an empty document)")]
    NoPod,
    #[error(
        "pod manifest: document {number}: berth runs a Pod (apiVersion v1), found kind {kind:?} apiVersion {api_version:?}"
    )]
    NotAPod {
        /// 1-based, counting empty documents.
        number: usize,
        kind: String,
        api_version: String,
    },
    #[error("pod manifest: documents {first} and {second} are both Pods; berth runs one pod per manifest")]
    ManyPods { first: usize, second: usize },
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("volume {volume:?}: host path {}: {message}", path.display())]
    HostPath {
        volume: String,
        path: PathBuf,
        message: String,
    },
    #[error("volume {volume:?}: host path {}: {source}", path.display())]
    HostPathIo {
        volume: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// The typed subset of the Pod API.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: Metadata,
    spec: Option<Spec>,
}

#[derive(Default, Deserialize)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    hostname: Option<String>,
    #[serde(default)]
    host_network: bool,
    #[serde(rename = "hostPID", default)]
    host_pid: bool,
    #[serde(rename = "hostIPC", default)]
    host_ipc: bool,
    #[serde(default)]
    share_process_namespace: bool,
    dns_config: Option<PodDnsConfig>,
    security_context: Option<PodSecurityContext>,
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
    #[serde(default)]
    volumes: Vec<Volume>,
    runtime_class_name: Option<String>,
    restart_policy: Option<String>,
    host_aliases: Option<IgnoredAny>,
    ephemeral_containers: Option<IgnoredAny>,
    active_deadline_seconds: Option<IgnoredAny>,
    subdomain: Option<IgnoredAny>,
    #[serde(rename = "setHostnameAsFQDN")]
    set_hostname_as_fqdn: Option<IgnoredAny>,
    host_users: Option<IgnoredAny>,
    resource_claims: Option<IgnoredAny>,
    resources: Option<IgnoredAny>,
    readiness_gates: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct PodDnsConfig {
    #[serde(default)]
    nameservers: Vec<String>,
    #[serde(default)]
    searches: Vec<String>,
    #[serde(default)]
    options: Vec<DnsOption>,
}

#[derive(Deserialize)]
struct DnsOption {
    name: String,
    value: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSecurityContext {
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    run_as_non_root: Option<bool>,
    #[serde(default)]
    supplemental_groups: Vec<u32>,
    #[serde(default)]
    sysctls: Vec<Sysctl>,
    seccomp_profile: Option<SeccompProfile>,
    fs_group: Option<IgnoredAny>,
    fs_group_change_policy: Option<IgnoredAny>,
    supplemental_groups_policy: Option<IgnoredAny>,
    #[serde(rename = "seLinuxOptions")]
    selinux_options: Option<IgnoredAny>,
    app_armor_profile: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Sysctl {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeccompProfile {
    #[serde(rename = "type")]
    kind: String,
    localhost_profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: Option<String>,
    image: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    working_dir: Option<String>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    resources: ContainerResources,
    security_context: Option<ContainerSecurityContext>,
    #[serde(default)]
    stdin: bool,
    #[serde(default)]
    stdin_once: bool,
    #[serde(default)]
    tty: bool,
    lifecycle: Option<IgnoredAny>,
    liveness_probe: Option<IgnoredAny>,
    readiness_probe: Option<IgnoredAny>,
    startup_probe: Option<IgnoredAny>,
    env_from: Option<IgnoredAny>,
    volume_devices: Option<IgnoredAny>,
    /// `Always` on an init container makes it a sidecar.
    restart_policy: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value: Option<String>,
    value_from: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: i64,
    host_port: Option<i64>,
    protocol: Option<String>,
    #[serde(rename = "hostIP")]
    host_ip: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
    #[serde(default)]
    read_only: bool,
    sub_path: Option<String>,
    sub_path_expr: Option<IgnoredAny>,
    mount_propagation: Option<String>,
    recursive_read_only: Option<IgnoredAny>,
}

#[derive(Default, Deserialize)]
struct ContainerResources {
    #[serde(default)]
    limits: BTreeMap<String, QuantityText>,
    #[serde(default)]
    requests: BTreeMap<String, QuantityText>,
    claims: Option<IgnoredAny>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerSecurityContext {
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    run_as_non_root: Option<bool>,
    read_only_root_filesystem: Option<bool>,
    privileged: Option<bool>,
    allow_privilege_escalation: Option<bool>,
    capabilities: Option<Capabilities>,
    seccomp_profile: Option<SeccompProfile>,
    #[serde(rename = "seLinuxOptions")]
    selinux_options: Option<IgnoredAny>,
    app_armor_profile: Option<IgnoredAny>,
    proc_mount: Option<IgnoredAny>,
}

#[derive(Default, Deserialize)]
struct Capabilities {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    host_path: Option<HostPathSource>,
    empty_dir: Option<EmptyDirSource>,
    /// Every other volume source (configMap, secret, persistentVolumeClaim…).
    #[serde(flatten)]
    other: BTreeMap<String, IgnoredAny>,
}

#[derive(Deserialize)]
struct HostPathSource {
    path: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmptyDirSource {
    medium: Option<String>,
    size_limit: Option<QuantityText>,
}

/// A quantity as written: YAML lets `cpu: 2` or `cpu: 0.5` arrive as numbers.
#[derive(Clone, Debug)]
struct QuantityText(String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = QuantityText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quantity such as 128Mi, 500m or 0.5")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Quantities.

/// A Kubernetes quantity: `mantissa * 10^pow10 * 2^pow2`, exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Quantity {
    mantissa: u128,
    pow10: i32,
    pow2: u32,
}

impl Quantity {
    /// `self * factor`, rounded up as Kubernetes' `Value`/`MilliValue` do;
    /// `None` when it does not fit.
    fn scaled_ceil(&self, factor: u128) -> Option<u128> {
        let n = self
            .mantissa
            .checked_mul(factor)?
            .checked_mul(1u128.checked_shl(self.pow2)?)?;
        if self.pow10 >= 0 {
            return n.checked_mul(10u128.checked_pow(self.pow10 as u32)?);
        }
        match 10u128.checked_pow(self.pow10.unsigned_abs()) {
            Some(div) => Some(n.div_ceil(div)),
            // Smaller than any unit berth counts in.
            None => Some(u128::from(n > 0)),
        }
    }

    fn bytes(&self) -> Option<u64> {
        self.scaled_ceil(1).and_then(|v| u64::try_from(v).ok())
    }

    fn milli(&self) -> Option<u64> {
        self.scaled_ceil(1000).and_then(|v| u64::try_from(v).ok())
    }
}

/// Parses `<number><suffix>`: binary (Ki…Ei), decimal (n u m k M G T P E),
/// or an exponent (`1e3`). Negative quantities are rejected: no resource
/// berth maps may be negative.
fn parse_quantity(text: &str) -> Option<Quantity> {
    let s = text.strip_prefix('+').unwrap_or(text);
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 38 {
        return None;
    }
    let mantissa: u128 = digits.parse().ok()?;
    let mut pow10 = -(frac_part.len() as i32);
    let mut pow2 = 0;
    match suffix {
        "" => {}
        "Ki" => pow2 = 10,
        "Mi" => pow2 = 20,
        "Gi" => pow2 = 30,
        "Ti" => pow2 = 40,
        "Pi" => pow2 = 50,
        "Ei" => pow2 = 60,
        "n" => pow10 -= 9,
        "u" => pow10 -= 6,
        "m" => pow10 -= 3,
        "k" => pow10 += 3,
        "M" => pow10 += 6,
        "G" => pow10 += 9,
        "T" => pow10 += 12,
        "P" => pow10 += 15,
        "E" => pow10 += 18,
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let exp: i32 = exp.parse().ok()?;
            if exp.unsigned_abs() > 100 {
                return None;
            }
            pow10 += exp;
        }
    }
    Some(Quantity {
        mantissa,
        pow10,
        pow2,
    })
}

fn quantity(field: &str, text: &QuantityText) -> Result<Quantity, ManifestError> {
    parse_quantity(&text.0).ok_or_else(|| field_err(field, format!("{:?} is not a quantity", text.0)))
}

fn out_of_range(field: &str, text: &QuantityText) -> ManifestError {
    field_err(field, format!("{:?} is out of range", text.0))
}

fn quantity_bytes(field: &str, text: &QuantityText) -> Result<u64, ManifestError> {
    quantity(field, text)?
        .bytes()
        .ok_or_else(|| out_of_range(field, text))
}

fn quantity_milli(field: &str, text: &QuantityText) -> Result<u64, ManifestError> {
    quantity(field, text)?
        .milli()
        .ok_or_else(|| out_of_range(field, text))
}

// ---------------------------------------------------------------------------
// Documents.

/// Finds the one Pod among the documents and deserializes it.
fn read_pod(text: &str) -> Result<Pod, ManifestError> {
    let yaml = |e: serde_norway::Error| ManifestError::Yaml(e.to_string());
    let mut pod_index = None;
    for (index, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let Some(header) = Option::<Header>::deserialize(doc).map_err(yaml)? else {
            // `---` followed by nothing, as kubectl accepts.
            continue;
        };
        let kind = header.kind.unwrap_or_default();
        let api_version = header.api_version.unwrap_or_default();
        if kind != "Pod" || api_version != "v1" {
            return Err(ManifestError::NotAPod {
                number,
                kind,
                api_version,
            });
        }
        if let Some(first) = pod_index {
            return Err(ManifestError::ManyPods {
                first: first + 1,
                second: number,
            });
        }
        pod_index = Some(index);
    }
    let index = pod_index.ok_or(ManifestError::NoPod)?;
    let doc = serde_norway::Deserializer::from_str(text)
        .nth(index)
        .ok_or(ManifestError::NoPod)?;
    Pod::deserialize(doc).map_err(yaml)
}

/// Parses a Pod manifest. `volumes_dir` is the pod's own directory for
/// emptyDir volumes (the caller gives `<root>/pods/<id>/volumes`).
pub fn parse(text: &str, volumes_dir: &Path) -> Result<PodManifest, ManifestError> {
    let pod = read_pod(text)?;
    let spec = pod.spec.ok_or_else(|| field_err("spec", "required"))?;
    let mut warnings = Vec::new();
    let pod_config = pod_config(pod.metadata, &spec, &mut warnings)?;
    let volumes = volumes(&spec.volumes, volumes_dir, &mut warnings)?;
    let pod_security = spec.security_context.unwrap_or_default();
    let mut mapper = ContainerMapper {
        volumes: &volumes,
        pod_security: &pod_security,
        pod: &pod_config,
        names: BTreeSet::new(),
        tmpfs_users: BTreeMap::new(),
        sub_paths: Vec::new(),
        warnings: &mut warnings,
    };
    let init_containers = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| mapper.map(&format!("spec.initContainers[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| mapper.map(&format!("spec.containers[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let sub_paths = std::mem::take(&mut mapper.sub_paths);
    let tmpfs_users = std::mem::take(&mut mapper.tmpfs_users);
    for (volume, users) in tmpfs_users.iter().filter(|(_, u)| u.len() > 1) {
        warnings.push(format!(
            "volume {volume:?}: a memory emptyDir is a separate tmpfs in each of {}, not shared",
            users.join(", ")
        ));
    }
    if containers.is_empty() {
        return Err(field_err("spec.containers", "at least one container is required"));
    }
    let mut pod_config = pod_config;
    pod_config.privileged = init_containers
        .iter()
        .chain(&containers)
        .any(|c| c.security.privileged);
    pod_config.port_mappings = if spec.host_network {
        // No network namespace to forward into: the ports are the host's.
        Vec::new()
    } else {
        port_mappings(&spec.containers)?
    };
    Ok(PodManifest {
        pod: pod_config,
        init_containers,
        containers,
        // In manifest order, so errors and creation follow what the user wrote.
        empty_dirs: in_order(&spec.volumes, &volumes, |v| v.empty_dir.clone()),
        host_paths: in_order(&spec.volumes, &volumes, |v| v.host_path.clone()),
        sub_paths,
        warnings,
    })
}

fn in_order<T>(
    specs: &[Volume],
    resolved: &BTreeMap<String, ResolvedVolume>,
    pick: impl Fn(&ResolvedVolume) -> Option<T>,
) -> Vec<T> {
    specs
        .iter()
        .filter_map(|v| resolved.get(&v.name).and_then(&pick))
        .collect()
}

fn warn_if(warnings: &mut Vec<String>, present: bool, field: &str) {
    if present {
        warnings.push(format!("{field}: not supported by berth, ignored"));
    }
}

fn pod_config(
    metadata: Metadata,
    spec: &Spec,
    warnings: &mut Vec<String>,
) -> Result<PodConfig, ManifestError> {
    let name = metadata
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| field_err("metadata.name", "required"))?;
    let mut namespaces = NamespaceOptions::kubernetes();
    if spec.share_process_namespace {
        namespaces.pid = NsMode::Pod;
    }
    if spec.host_pid {
        namespaces.pid = NsMode::Node;
    }
    if spec.host_ipc {
        namespaces.ipc = NsMode::Node;
    }
    if spec.host_network {
        namespaces.network = NsMode::Node;
    }
    let security = spec.security_context.as_ref();
    let seccomp = security
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| seccomp("spec.securityContext.seccompProfile", p))
        .transpose()?;
    let dns = spec.dns_config.as_ref().map(|d| DnsConfig {
        servers: d.nameservers.clone(),
        searches: d.searches.clone(),
        options: d
            .options
            .iter()
            .map(|o| match &o.value {
                Some(v) => format!("{}:{v}", o.name),
                None => o.name.clone(),
            })
            .collect(),
    });
    pod_warnings(spec, warnings);
    if spec.host_network && spec.hostname.is_some() {
        warnings.push("spec.hostname: ignored with hostNetwork, the pod keeps the host's name".into());
    }
    Ok(PodConfig {
        name,
        k8s_namespace: metadata.namespace.unwrap_or_else(|| "default".into()),
        uid: metadata.uid.unwrap_or_default(),
        // The kubelet gives a host-network pod the node's own name.
        hostname: spec.hostname.clone().filter(|_| !spec.host_network),
        labels: metadata.labels,
        annotations: metadata.annotations,
        namespaces,
        sysctls: security
            .map(|s| {
                s.sysctls
                    .iter()
                    .map(|c| (c.name.clone(), c.value.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        runtime_handler: spec.runtime_class_name.clone().unwrap_or_default(),
        dns,
        run_as_user: security.and_then(|s| s.run_as_user),
        run_as_group: security.and_then(|s| s.run_as_group),
        supplemental_groups: security
            .map(|s| s.supplemental_groups.clone())
            .unwrap_or_default(),
        seccomp,
        ..PodConfig::default()
    })
}

fn pod_warnings(spec: &Spec, warnings: &mut Vec<String>) {
    // berth runs each container once; Never is the only policy it keeps.
    let restarts = spec.restart_policy.as_deref().is_some_and(|p| p != "Never");
    warn_if(warnings, restarts, "spec.restartPolicy");
    warn_if(warnings, spec.host_aliases.is_some(), "spec.hostAliases");
    warn_if(
        warnings,
        spec.ephemeral_containers.is_some(),
        "spec.ephemeralContainers",
    );
    warn_if(
        warnings,
        spec.active_deadline_seconds.is_some(),
        "spec.activeDeadlineSeconds",
    );
    warn_if(warnings, spec.subdomain.is_some(), "spec.subdomain");
    warn_if(
        warnings,
        spec.set_hostname_as_fqdn.is_some(),
        "spec.setHostnameAsFQDN",
    );
    warn_if(warnings, spec.host_users.is_some(), "spec.hostUsers");
    warn_if(warnings, spec.resource_claims.is_some(), "spec.resourceClaims");
    warn_if(warnings, spec.resources.is_some(), "spec.resources");
    warn_if(warnings, spec.readiness_gates.is_some(), "spec.readinessGates");
    if let Some(s) = &spec.security_context {
        let f = "spec.securityContext";
        warn_if(warnings, s.fs_group.is_some(), &format!("{f}.fsGroup"));
        warn_if(
            warnings,
            s.fs_group_change_policy.is_some(),
            &format!("{f}.fsGroupChangePolicy"),
        );
        warn_if(
            warnings,
            s.supplemental_groups_policy.is_some(),
            &format!("{f}.supplementalGroupsPolicy"),
        );
        warn_if(
            warnings,
            s.selinux_options.is_some(),
            &format!("{f}.seLinuxOptions"),
        );
        warn_if(
            warnings,
            s.app_armor_profile.is_some(),
            &format!("{f}.appArmorProfile"),
        );
    }
}

fn seccomp(field: &str, profile: &SeccompProfile) -> Result<Seccomp, ManifestError> {
    match profile.kind.as_str() {
        "RuntimeDefault" => Ok(Seccomp::RuntimeDefault),
        "Unconfined" => Ok(Seccomp::Unconfined),
        // Kubernetes resolves it below the kubelet's seccomp root; berth has
        // none, so the path is taken as the host path it names.
        "Localhost" => match profile.localhost_profile.as_deref() {
            Some(p) if !p.is_empty() => Ok(Seccomp::Localhost(PathBuf::from(p))),
            _ => Err(field_err(
                format!("{field}.localhostProfile"),
                "required when type is Localhost",
            )),
        },
        other => Err(field_err(
            format!("{field}.type"),
            format!("{other:?} is not RuntimeDefault, Unconfined or Localhost"),
        )),
    }
}

fn port_mappings(containers: &[Container]) -> Result<Vec<PortMapping>, ManifestError> {
    let mut mappings = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, p) in c.ports.iter().enumerate() {
            let field = format!("spec.containers[{i}].ports[{j}]");
            let container_port = port(&format!("{field}.containerPort"), p.container_port)?;
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => "tcp",
                "UDP" => "udp",
                "SCTP" => "sctp",
                other => {
                    return Err(field_err(
                        format!("{field}.protocol"),
                        format!("{other:?} is not TCP, UDP or SCTP"),
                    ));
                }
            };
            let Some(host_port) = p.host_port.filter(|&h| h != 0) else {
                continue;
            };
            mappings.push(PortMapping {
                protocol: protocol.into(),
                container_port,
                host_port: port(&format!("{field}.hostPort"), host_port)?,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    Ok(mappings)
}

fn port(field: &str, value: i64) -> Result<u16, ManifestError> {
    u16::try_from(value)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| field_err(field, format!("{value} is not a port (1-65535)")))
}

/// Kubernetes' `$(NAME)` expansion: a defined name is replaced, `$$` is a
/// literal `$`, and anything else (an undefined name, an unclosed `$(`) is
/// kept as written.
fn expand(input: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|r| r.split_once(')')) {
            // A later definition of a name wins, as in the environment.
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// Volumes.

/// What a volume name resolves to when a container mounts it.
enum VolumeSource {
    Bind(PathBuf),
    Tmpfs {
        size: u64,
    },
    /// A source berth cannot provide; mounts of it are skipped with a warning.
    Unsupported(String),
}

struct ResolvedVolume {
    source: VolumeSource,
    empty_dir: Option<EmptyDir>,
    host_path: Option<HostPathVolume>,
}

/// Kubernetes' DNS label rule; it also keeps `volumes_dir/<name>` inside
/// `volumes_dir`.
fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    !b.is_empty() && b.len() <= 63 && b.iter().all(inner) && b[0] != b'-' && b[b.len() - 1] != b'-'
}

fn volumes(
    specs: &[Volume],
    volumes_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, ResolvedVolume>, ManifestError> {
    let mut out = BTreeMap::new();
    for (i, v) in specs.iter().enumerate() {
        let field = format!("spec.volumes[{i}]");
        if !is_dns_label(&v.name) {
            return Err(field_err(
                format!("{field}.name"),
                format!("{:?} is not a DNS label (lowercase letters, digits, '-')", v.name),
            ));
        }
        if out.contains_key(&v.name) {
            return Err(field_err(
                format!("{field}.name"),
                format!("volume {:?} is defined twice", v.name),
            ));
        }
        let resolved = volume(&field, v, volumes_dir, warnings)?;
        out.insert(v.name.clone(), resolved);
    }
    Ok(out)
}

fn volume(
    field: &str,
    v: &Volume,
    volumes_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<ResolvedVolume, ManifestError> {
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        if !path.is_absolute() {
            return Err(field_err(
                format!("{field}.hostPath.path"),
                format!("{:?} is not an absolute path", h.path),
            ));
        }
        let kind = host_path_type(&format!("{field}.hostPath.type"), h.kind.as_deref())?;
        return Ok(ResolvedVolume {
            source: VolumeSource::Bind(path.clone()),
            empty_dir: None,
            host_path: Some(HostPathVolume {
                name: v.name.clone(),
                path,
                kind,
            }),
        });
    }
    if let Some(e) = &v.empty_dir {
        let size_limit = e
            .size_limit
            .as_ref()
            .map(|q| quantity_bytes(&format!("{field}.emptyDir.sizeLimit"), q))
            .transpose()?;
        return match e.medium.as_deref().unwrap_or("") {
            "" => {
                let path = volumes_dir.join(&v.name);
                Ok(ResolvedVolume {
                    source: VolumeSource::Bind(path.clone()),
                    empty_dir: Some(EmptyDir {
                        name: v.name.clone(),
                        path,
                        size_limit,
                    }),
                    host_path: None,
                })
            }
            "Memory" => Ok(ResolvedVolume {
                source: VolumeSource::Tmpfs {
                    size: size_limit.unwrap_or(0),
                },
                empty_dir: None,
                host_path: None,
            }),
            other => Err(field_err(
                format!("{field}.emptyDir.medium"),
                format!("{other:?} is not supported (\"\" or Memory)"),
            )),
        };
    }
    let kind = v
        .other
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "no source".into());
    warnings.push(format!(
        "{field}.{kind}: volume {:?}: not supported by berth; its mounts are skipped",
        v.name
    ));
    Ok(ResolvedVolume {
        source: VolumeSource::Unsupported(kind),
        empty_dir: None,
        host_path: None,
    })
}

fn host_path_type(field: &str, kind: Option<&str>) -> Result<HostPathType, ManifestError> {
    Ok(match kind.unwrap_or("") {
        "" => HostPathType::Unchecked,
        "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
        "Directory" => HostPathType::Directory,
        "FileOrCreate" => HostPathType::FileOrCreate,
        "File" => HostPathType::File,
        "Socket" => HostPathType::Socket,
        "CharDevice" => HostPathType::CharDevice,
        "BlockDevice" => HostPathType::BlockDevice,
        other => return Err(field_err(field, format!("{other:?} is not a hostPath type"))),
    })
}

/// Joins a subPath below the volume, refusing anything that could climb out.
fn sub_path(field: &str, base: &Path, sub: &str) -> Result<PathBuf, ManifestError> {
    let rel = Path::new(sub);
    let bad = rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if bad {
        return Err(field_err(
            field,
            format!("{sub:?} must be a relative path without '..'"),
        ));
    }
    Ok(base.join(rel))
}

// ---------------------------------------------------------------------------
// Containers.

struct ContainerMapper<'a> {
    volumes: &'a BTreeMap<String, ResolvedVolume>,
    pod_security: &'a PodSecurityContext,
    pod: &'a PodConfig,
    names: BTreeSet<String>,
    /// Memory emptyDir name → containers mounting it.
    tmpfs_users: BTreeMap<String, Vec<String>>,
    sub_paths: Vec<SubPathDir>,
    warnings: &'a mut Vec<String>,
}

impl ContainerMapper<'_> {
    fn map(&mut self, field: &str, c: &Container) -> Result<ContainerConfig, ManifestError> {
        let name = c
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| field_err(format!("{field}.name"), "required"))?;
        if !self.names.insert(name.clone()) {
            return Err(field_err(
                format!("{field}.name"),
                format!("container name {name:?} is used twice"),
            ));
        }
        let image = c
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| field_err(format!("{field}.image"), "required"))?;
        self.container_warnings(field, c);
        let env = self.env(field, &c.env);
        let expand_all = |v: &[String]| v.iter().map(|a| expand(a, &env)).collect();
        Ok(ContainerConfig {
            command: expand_all(&c.command),
            args: expand_all(&c.args),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            mounts: self.mounts(field, &name, &c.volume_mounts)?,
            resources: resources(&format!("{field}.resources"), &c.resources, self.warnings)?,
            security: self.security(field, c.security_context.as_ref())?,
            name,
            image,
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            tty: c.tty,
            stdin: c.stdin,
            stdin_once: c.stdin_once,
            ..ContainerConfig::default()
        })
    }

    fn container_warnings(&mut self, field: &str, c: &Container) {
        let w = &mut *self.warnings;
        warn_if(w, c.lifecycle.is_some(), &format!("{field}.lifecycle"));
        warn_if(w, c.liveness_probe.is_some(), &format!("{field}.livenessProbe"));
        warn_if(w, c.readiness_probe.is_some(), &format!("{field}.readinessProbe"));
        warn_if(w, c.startup_probe.is_some(), &format!("{field}.startupProbe"));
        warn_if(w, c.env_from.is_some(), &format!("{field}.envFrom"));
        warn_if(w, c.volume_devices.is_some(), &format!("{field}.volumeDevices"));
        warn_if(w, c.restart_policy.is_some(), &format!("{field}.restartPolicy"));
        warn_if(
            w,
            c.resources.claims.is_some(),
            &format!("{field}.resources.claims"),
        );
        if let Some(s) = &c.security_context {
            let f = format!("{field}.securityContext");
            warn_if(w, s.selinux_options.is_some(), &format!("{f}.seLinuxOptions"));
            warn_if(w, s.app_armor_profile.is_some(), &format!("{f}.appArmorProfile"));
            warn_if(w, s.proc_mount.is_some(), &format!("{f}.procMount"));
        }
    }

    /// The container's variables with `$(NAME)` references to earlier ones
    /// expanded, as the kubelet does before the runtime sees them.
    fn env(&mut self, field: &str, env: &[EnvVar]) -> Vec<(String, String)> {
        let mut vars = Vec::new();
        for (i, e) in env.iter().enumerate() {
            if e.value_from.is_some() {
                self.warnings.push(format!(
                    "{field}.env[{i}].valueFrom: not supported by berth; {:?} is not set",
                    e.name
                ));
                continue;
            }
            let value = expand(e.value.as_deref().unwrap_or(""), &vars);
            vars.push((e.name.clone(), value));
        }
        vars
    }

    fn mounts(
        &mut self,
        field: &str,
        container: &str,
        mounts: &[VolumeMount],
    ) -> Result<Vec<Mount>, ManifestError> {
        let mut out = Vec::new();
        for (i, m) in mounts.iter().enumerate() {
            let field = format!("{field}.volumeMounts[{i}]");
            let volume = self.volumes.get(&m.name).ok_or_else(|| {
                field_err(
                    format!("{field}.name"),
                    format!(
                        "container {container:?} mounts volume {:?}, which spec.volumes does not define",
                        m.name
                    ),
                )
            })?;
            if !m.mount_path.starts_with('/') {
                return Err(field_err(
                    format!("{field}.mountPath"),
                    format!("{:?} is not an absolute path", m.mount_path),
                ));
            }
            if m.sub_path_expr.is_some() {
                self.warnings.push(format!(
                    "{field}.subPathExpr: not supported by berth; the mount of {:?} is skipped",
                    m.name
                ));
                continue;
            }
            warn_if(
                self.warnings,
                m.recursive_read_only.is_some(),
                &format!("{field}.recursiveReadOnly"),
            );
            let propagation = propagation(
                &format!("{field}.mountPropagation"),
                m.mount_propagation.as_deref(),
            )?;
            let sub = m.sub_path.as_deref().filter(|s| !s.is_empty());
            let (kind, size) = match &volume.source {
                VolumeSource::Bind(base) => {
                    let source = match sub {
                        Some(sub) => {
                            let path = sub_path(&format!("{field}.subPath"), base, sub)?;
                            self.sub_paths.push(SubPathDir {
                                volume: m.name.clone(),
                                base: base.clone(),
                                path: path.clone(),
                            });
                            path
                        }
                        None => base.clone(),
                    };
                    (MountKind::Bind(source), 0)
                }
                VolumeSource::Tmpfs { size } => {
                    if sub.is_some() {
                        return Err(field_err(
                            format!("{field}.subPath"),
                            format!(
                                "volume {:?} is a memory emptyDir, which berth mounts as a tmpfs of its own: a subPath cannot be taken from it",
                                m.name
                            ),
                        ));
                    }
                    self.tmpfs_users
                        .entry(m.name.clone())
                        .or_default()
                        .push(container.to_owned());
                    (MountKind::Tmpfs, *size)
                }
                VolumeSource::Unsupported(kind) => {
                    self.warnings.push(format!(
                        "{field}: volume {:?} ({kind}) is not supported; {} is not mounted",
                        m.name, m.mount_path
                    ));
                    continue;
                }
            };
            out.push(Mount {
                destination: m.mount_path.clone(),
                kind,
                readonly: m.read_only,
                propagation,
                size,
                recursive_readonly: false,
            });
        }
        Ok(out)
    }

    fn security(
        &mut self,
        field: &str,
        c: Option<&ContainerSecurityContext>,
    ) -> Result<SecurityContext, ManifestError> {
        let default = ContainerSecurityContext::default();
        let c = c.unwrap_or(&default);
        let pod = self.pod_security;
        let run_as_user = c.run_as_user.or(pod.run_as_user);
        let seccomp = match &c.seccomp_profile {
            Some(p) => Some(seccomp(&format!("{field}.securityContext.seccompProfile"), p)?),
            None => self.pod.seccomp.clone(),
        };
        if c.run_as_non_root.or(pod.run_as_non_root) == Some(true) {
            match run_as_user {
                Some(0) => {
                    return Err(field_err(
                        format!("{field}.securityContext.runAsNonRoot"),
                        "true, but runAsUser is 0",
                    ));
                }
                Some(_) => {}
                None => self.warnings.push(format!(
                    "{field}.securityContext.runAsNonRoot: no runAsUser to check it against; the image's user decides"
                )),
            }
        }
        let caps = c.capabilities.as_ref();
        Ok(SecurityContext {
            privileged: c.privileged.unwrap_or(false),
            add_capabilities: caps.map(|c| c.add.clone()).unwrap_or_default(),
            drop_capabilities: caps.map(|c| c.drop.clone()).unwrap_or_default(),
            run_as_user,
            run_as_group: c.run_as_group.or(pod.run_as_group),
            supplemental_groups: pod.supplemental_groups.clone(),
            readonly_rootfs: c.read_only_root_filesystem.unwrap_or(false),
            no_new_privs: c.allow_privilege_escalation == Some(false),
            seccomp,
            namespaces: Some(self.pod.namespaces.clone()),
            ..SecurityContext::default()
        })
    }
}

fn propagation(field: &str, value: Option<&str>) -> Result<Propagation, ManifestError> {
    match value.unwrap_or("None") {
        "None" => Ok(Propagation::Private),
        "HostToContainer" => Ok(Propagation::HostToContainer),
        "Bidirectional" => Ok(Propagation::Bidirectional),
        other => Err(field_err(
            field,
            format!("{other:?} is not None, HostToContainer or Bidirectional"),
        )),
    }
}

/// cgroup CPU period the kubelet uses, in microseconds.
const CPU_PERIOD: u64 = 100_000;
/// The kubelet's floor for a quota (1 ms per period).
const MIN_CPU_QUOTA: u64 = 1_000;
/// The kernel's floor for cpu.shares, which the kubelet also applies.
const MIN_CPU_SHARES: u64 = 2;

fn resources(
    field: &str,
    r: &ContainerResources,
    warnings: &mut Vec<String>,
) -> Result<Resources, ManifestError> {
    let mut out = Resources::default();
    for (name, value) in &r.limits {
        let f = format!("{field}.limits.{name}");
        match name.as_str() {
            "memory" => {
                let bytes = quantity_bytes(&f, value)?;
                out.memory_limit = i64::try_from(bytes).map_err(|_| out_of_range(&f, value))?;
            }
            "cpu" => {
                let milli = quantity_milli(&f, value)?;
                if milli > 0 {
                    let quota = (milli * CPU_PERIOD / 1000).max(MIN_CPU_QUOTA);
                    out.cpu_quota = i64::try_from(quota).map_err(|_| out_of_range(&f, value))?;
                    out.cpu_period = CPU_PERIOD;
                }
            }
            n if n.starts_with("hugepages-") => {
                let size = QuantityText(n["hugepages-".len()..].to_owned());
                let page = quantity_bytes(&f, &size)?;
                out.hugepage_limits
                    .insert(hugepage_size_name(page), quantity_bytes(&f, value)?);
            }
            _ => warnings.push(format!("{f}: not supported by berth, ignored")),
        }
    }
    let cpu_request = r
        .requests
        .get("cpu")
        .map(|q| (format!("{field}.requests.cpu"), q));
    let cpu_limit = r.limits.get("cpu").map(|q| (format!("{field}.limits.cpu"), q));
    if let Some((f, q)) = cpu_request.or(cpu_limit) {
        let milli = quantity_milli(&f, q)?;
        out.cpu_shares = (milli.saturating_mul(1024) / 1000).max(MIN_CPU_SHARES);
    }
    Ok(out)
}

/// `2097152` → `2MB`, the kernel's hugetlb naming that CRI also uses.
fn hugepage_size_name(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut size = bytes;
    let mut unit = 0;
    while size >= 1024 && size.is_multiple_of(1024) && unit < UNITS.len() - 1 {
        size /= 1024;
        unit += 1;
    }
    format!("{size}{}", UNITS[unit])
}

// ---------------------------------------------------------------------------
// Host side.

/// Does what the kubelet does for hostPath volumes before the pod starts:
/// checks or creates each one as its `type` asks, and creates the
/// directories that subPath mounts of them bind. Touches nothing below the
/// `volumes_dir` given to `parse` (see `prepare_empty_dirs`).
pub fn prepare_host_paths(manifest: &PodManifest) -> Result<(), ManifestError> {
    for h in &manifest.host_paths {
        prepare_host_path(h)?;
    }
    for s in sub_paths_of(manifest, |base| {
        manifest.host_paths.iter().any(|h| h.path == base)
    }) {
        prepare_sub_path(s)?;
    }
    Ok(())
}

/// Creates the disk-backed emptyDir directories (mode 0777, as the kubelet)
/// and the subPath directories below them. Call it once the `volumes_dir`
/// given to `parse` is the pod's real one.
pub fn prepare_empty_dirs(manifest: &PodManifest) -> Result<(), ManifestError> {
    for e in &manifest.empty_dirs {
        let io_err = |source| ManifestError::HostPathIo {
            volume: e.name.clone(),
            path: e.path.clone(),
            source,
        };
        fs::create_dir_all(&e.path).map_err(io_err)?;
        // Any user in any container may write to an emptyDir.
        fs::set_permissions(&e.path, fs::Permissions::from_mode(0o777)).map_err(io_err)?;
    }
    for s in sub_paths_of(manifest, |base| {
        manifest.empty_dirs.iter().any(|e| e.path == base)
    }) {
        prepare_sub_path(s)?;
    }
    Ok(())
}

fn sub_paths_of<'a>(
    manifest: &'a PodManifest,
    base_is: impl Fn(&Path) -> bool + 'a,
) -> impl Iterator<Item = &'a SubPathDir> + 'a {
    manifest.sub_paths.iter().filter(move |s| base_is(&s.base))
}

fn prepare_host_path(h: &HostPathVolume) -> Result<(), ManifestError> {
    let io_err = |source| ManifestError::HostPathIo {
        volume: h.name.clone(),
        path: h.path.clone(),
        source,
    };
    let wrong = |message: &str| ManifestError::HostPath {
        volume: h.name.clone(),
        path: h.path.clone(),
        message: message.into(),
    };
    match h.kind {
        HostPathType::Unchecked => return Ok(()),
        HostPathType::DirectoryOrCreate if !h.path.exists() => {
            return fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&h.path)
                .map_err(io_err);
        }
        HostPathType::FileOrCreate if !h.path.exists() => {
            if let Some(parent) = h.path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(io_err)?;
            }
            return fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&h.path)
                .map(drop)
                .map_err(io_err);
        }
        _ => {}
    }
    let meta = fs::metadata(&h.path).map_err(io_err)?;
    let ft = meta.file_type();
    let (ok, what) = match h.kind {
        HostPathType::Directory | HostPathType::DirectoryOrCreate => (ft.is_dir(), "a directory"),
        HostPathType::File | HostPathType::FileOrCreate => (ft.is_file(), "a file"),
        HostPathType::Socket => (ft.is_socket(), "a socket"),
        HostPathType::CharDevice => (ft.is_char_device(), "a character device"),
        HostPathType::BlockDevice => (ft.is_block_device(), "a block device"),
        HostPathType::Unchecked => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(wrong(&format!("is not {what}")))
    }
}

fn prepare_sub_path(s: &SubPathDir) -> Result<(), ManifestError> {
    let io_err = |source| ManifestError::HostPathIo {
        volume: s.volume.clone(),
        path: s.path.clone(),
        source,
    };
    if !s.path.exists() {
        fs::create_dir_all(&s.path).map_err(io_err)?;
    }
    // A symlink inside the volume (one a container made, in an emptyDir)
    // must not turn the subPath into a window onto the rest of the host.
    let base = fs::canonicalize(&s.base).map_err(io_err)?;
    let real = fs::canonicalize(&s.path).map_err(io_err)?;
    if !real.starts_with(&base) {
        return Err(ManifestError::HostPath {
            volume: s.volume.clone(),
            path: s.path.clone(),
            message: format!("subPath resolves to {}, outside the volume", real.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALISTIC: &str = r#"
# a comment before the document
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  uid: 0f1e2d3c
  labels:
    app: web
  annotations:
    team: storefront
  creationTimestamp: null
spec:
  hostname: web-0
  shareProcessNamespace: true
  runtimeClassName: vm
  nodeSelector:
    disk: ssd
  dnsConfig:
    nameservers: [10.0.0.10]
    searches: [shop.svc.cluster.local]
    options:
      - name: ndots
        value: "2"
      - name: edns0
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    supplementalGroups: [4000, 4001]
    sysctls:
      - name: net.ipv4.ip_unprivileged_port_start
        value: "0"
    seccompProfile:
      type: RuntimeDefault
  volumes:
    - name: config
      hostPath:
        path: /etc/web
        type: Directory
    - name: cache
      emptyDir:
        sizeLimit: 1Gi
    - name: scratch
      emptyDir:
        medium: Memory
        sizeLimit: 64Mi
  initContainers:
    - name: migrate
      image: registry.example/web:1.2
      command: ["/bin/migrate"]
      args: ["--up"]
      volumeMounts:
        - name: cache
          mountPath: /cache
  containers:
    - name: app
      image: registry.example/web:1.2
      imagePullPolicy: IfNotPresent
      args: ["--port", "8080"]
      workingDir: /srv
      env:
        - name: MODE
          value: production
        - name: EMPTY
      ports:
        - name: http
          containerPort: 8080
          hostPort: 18080
          hostIP: 127.0.0.1
        - containerPort: 9090
        - containerPort: 5353
          hostPort: 5353
          protocol: UDP
      volumeMounts:
        - name: config
          mountPath: /etc/web
          readOnly: true
          mountPropagation: HostToContainer
        - name: cache
          mountPath: /var/cache/web
          subPath: app/data
        - name: scratch
          mountPath: /tmp
      resources:
        requests:
          cpu: 250m
          memory: 64Mi
        limits:
          cpu: 1.5
          memory: 128Mi
          hugepages-2Mi: 4Mi
      securityContext:
        runAsUser: 1001
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities:
          add: [NET_BIND_SERVICE]
          drop: [ALL]
        seccompProfile:
          type: Localhost
          localhostProfile: /etc/berth/seccomp/web.json
      stdin: true
      stdinOnce: true
      tty: true
    - name: sidecar
      image: busybox
      command: ["sh", "-c", "sleep 1d"]
      resources:
        limits:
          cpu: "2"
      securityContext:
        privileged: true
"#;

    fn parse_ok(text: &str) -> PodManifest {
        parse(text, Path::new("/var/lib/berth/pods/p1/volumes"))
            .unwrap_or_else(|e| panic!("parse failed: {e}"))
    }

    fn parse_err(text: &str) -> String {
        match parse(text, Path::new("/v")) {
            Ok(_) => panic!("parse succeeded, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    /// A minimal pod with `extra` appended to its one container's YAML.
    fn pod_with(spec_extra: &str, container_extra: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec_extra}  containers:\n    - name: c\n      image: busybox\n{container_extra}"
        )
    }

    #[test]
    fn realistic_pod_maps_field_by_field() {
        let m = parse_ok(REALISTIC);
        let p = &m.pod;
        assert_eq!(p.name, "web");
        assert_eq!(p.k8s_namespace, "shop");
        assert_eq!(p.uid, "0f1e2d3c");
        assert_eq!(p.hostname.as_deref(), Some("web-0"));
        assert_eq!(p.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(p.annotations.get("team").map(String::as_str), Some("storefront"));
        assert_eq!(p.runtime_handler, "vm");
        assert_eq!(
            p.namespaces,
            NamespaceOptions {
                network: NsMode::Pod,
                pid: NsMode::Pod,
                ipc: NsMode::Pod,
                target_id: None
            }
        );
        assert_eq!(
            p.dns,
            Some(DnsConfig {
                servers: vec!["10.0.0.10".into()],
                searches: vec!["shop.svc.cluster.local".into()],
                options: vec!["ndots:2".into(), "edns0".into()],
            })
        );
        assert_eq!(p.run_as_user, Some(1000));
        assert_eq!(p.run_as_group, Some(3000));
        assert_eq!(p.supplemental_groups, vec![4000, 4001]);
        assert_eq!(
            p.sysctls
                .get("net.ipv4.ip_unprivileged_port_start")
                .map(String::as_str),
            Some("0")
        );
        assert_eq!(p.seccomp, Some(Seccomp::RuntimeDefault));
        assert!(p.privileged, "a privileged container makes the pod privileged");
        assert_eq!(
            p.port_mappings,
            vec![
                PortMapping {
                    protocol: "tcp".into(),
                    container_port: 8080,
                    host_port: 18080,
                    host_ip: "127.0.0.1".into()
                },
                PortMapping {
                    protocol: "udp".into(),
                    container_port: 5353,
                    host_port: 5353,
                    host_ip: String::new()
                },
            ]
        );

        assert_eq!(m.init_containers.len(), 1);
        let init = &m.init_containers[0];
        assert_eq!(init.name, "migrate");
        assert_eq!(init.command, vec!["/bin/migrate"]);
        assert_eq!(init.args, vec!["--up"]);
        assert_eq!(
            init.mounts,
            vec![Mount {
                destination: "/cache".into(),
                kind: MountKind::Bind("/var/lib/berth/pods/p1/volumes/cache".into()),
                readonly: false,
                propagation: Propagation::Private,
                size: 0,
                recursive_readonly: false,
            }]
        );
        // Pod-level values are the container's defaults.
        assert_eq!(init.security.run_as_user, Some(1000));
        assert_eq!(init.security.seccomp, Some(Seccomp::RuntimeDefault));

        let names: Vec<_> = m.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["app", "sidecar"]);
        let app = &m.containers[0];
        assert_eq!(app.image, "registry.example/web:1.2");
        assert!(app.command.is_empty(), "no command: the image ENTRYPOINT stays");
        assert_eq!(app.args, vec!["--port", "8080"]);
        assert_eq!(app.working_dir.as_deref(), Some("/srv"));
        assert_eq!(app.env, vec!["MODE=production", "EMPTY="]);
        assert!(app.stdin && app.stdin_once && app.tty);
        assert_eq!(
            app.mounts,
            vec![
                Mount {
                    destination: "/etc/web".into(),
                    kind: MountKind::Bind("/etc/web".into()),
                    readonly: true,
                    propagation: Propagation::HostToContainer,
                    size: 0,
                    recursive_readonly: false,
                },
                Mount {
                    destination: "/var/cache/web".into(),
                    kind: MountKind::Bind("/var/lib/berth/pods/p1/volumes/cache/app/data".into()),
                    readonly: false,
                    propagation: Propagation::Private,
                    size: 0,
                    recursive_readonly: false,
                },
                Mount {
                    destination: "/tmp".into(),
                    kind: MountKind::Tmpfs,
                    readonly: false,
                    propagation: Propagation::Private,
                    size: 64 << 20,
                    recursive_readonly: false,
                },
            ]
        );
        let r = &app.resources;
        assert_eq!(r.memory_limit, 128 << 20);
        assert_eq!((r.cpu_quota, r.cpu_period), (150_000, 100_000));
        assert_eq!(r.cpu_shares, 256, "from requests.cpu 250m");
        assert_eq!(r.hugepage_limits.get("2MB"), Some(&(4 << 20)));
        let s = &app.security;
        assert_eq!(s.run_as_user, Some(1001), "the container overrides the pod");
        assert_eq!(s.run_as_group, Some(3000), "the pod's default stays");
        assert_eq!(s.supplemental_groups, vec![4000, 4001]);
        assert!(s.readonly_rootfs && s.no_new_privs && !s.privileged);
        assert_eq!(s.add_capabilities, vec!["NET_BIND_SERVICE"]);
        assert_eq!(s.drop_capabilities, vec!["ALL"]);
        assert_eq!(
            s.seccomp,
            Some(Seccomp::Localhost("/etc/berth/seccomp/web.json".into()))
        );

        let sidecar = &m.containers[1];
        assert_eq!(sidecar.command, vec!["sh", "-c", "sleep 1d"]);
        assert!(sidecar.security.privileged);
        assert!(!sidecar.security.no_new_privs);
        let r = &sidecar.resources;
        assert_eq!((r.cpu_quota, r.cpu_period), (200_000, 100_000));
        assert_eq!(r.cpu_shares, 2048, "from limits.cpu when no request");
        assert_eq!(r.memory_limit, 0);

        assert_eq!(
            m.empty_dirs,
            vec![EmptyDir {
                name: "cache".into(),
                path: "/var/lib/berth/pods/p1/volumes/cache".into(),
                size_limit: Some(1 << 30),
            }]
        );
        assert_eq!(
            m.host_paths,
            vec![HostPathVolume {
                name: "config".into(),
                path: "/etc/web".into(),
                kind: HostPathType::Directory,
            }]
        );
        assert_eq!(
            m.sub_paths,
            vec![SubPathDir {
                volume: "cache".into(),
                base: "/var/lib/berth/pods/p1/volumes/cache".into(),
                path: "/var/lib/berth/pods/p1/volumes/cache/app/data".into(),
            }]
        );
        assert!(m.warnings.is_empty(), "unexpected warnings: {:?}", m.warnings);
    }

    #[test]
    fn quantities_parse_as_kubernetes_does() {
        let bytes = |s: &str| parse_quantity(s).and_then(|q| q.bytes());
        let milli = |s: &str| parse_quantity(s).and_then(|q| q.milli());
        let table: &[(&str, Option<u64>)] = &[
            ("128974848", Some(128_974_848)),
            ("129e6", Some(129_000_000)),
            ("1e3", Some(1000)),
            ("1E3", Some(1000)),
            ("129M", Some(129_000_000)),
            ("123Mi", Some(123 << 20)),
            ("1Ki", Some(1024)),
            ("2Gi", Some(2 << 30)),
            ("1Ti", Some(1 << 40)),
            ("1k", Some(1000)),
            ("1G", Some(1_000_000_000)),
            ("1.5Gi", Some(3 << 29)),
            ("0.5", Some(1)), // rounded up, as Value()
            (".5Ki", Some(512)),
            ("+1k", Some(1000)),
            ("12Qi", None),
            ("-1", None),
            ("", None),
            ("Mi", None),
            ("1e", None),
            ("1..2", None),
            ("1 Mi", None),
            ("16Ei", None), // 2^64 does not fit
        ];
        for (text, want) in table {
            assert_eq!(bytes(text), *want, "bytes of {text:?}");
        }
        let table: &[(&str, Option<u64>)] = &[
            ("500m", Some(500)),
            ("0.5", Some(500)),
            ("2", Some(2000)),
            ("1.5", Some(1500)),
            ("0.0001", Some(1)), // rounded up, as MilliValue()
            ("100u", Some(1)),
            ("1e-3", Some(1)),
            ("2e1", Some(20_000)),
            ("250000n", Some(1)),
            ("1k", Some(1_000_000)),
        ];
        for (text, want) in table {
            assert_eq!(milli(text), *want, "milli of {text:?}");
        }
    }

    #[test]
    fn numeric_yaml_quantities_are_accepted() {
        let m = parse_ok(&pod_with(
            "",
            "      resources:\n        limits:\n          cpu: 0.5\n          memory: 1e3\n",
        ));
        let r = &m.containers[0].resources;
        assert_eq!(r.memory_limit, 1000);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_shares, 512);
    }

    #[test]
    fn tiny_cpu_gets_the_kubelet_floors() {
        let m = parse_ok(&pod_with(
            "",
            "      resources:\n        limits:\n          cpu: 1m\n",
        ));
        let r = &m.containers[0].resources;
        assert_eq!(r.cpu_quota, 1000, "min quota");
        assert_eq!(r.cpu_shares, 2, "min shares");
    }

    #[test]
    fn bad_quantity_names_its_field() {
        let text = REALISTIC.replace("          cpu: \"2\"", "          memory: 12Qi");
        assert_eq!(
            parse_err(&text),
            r#"spec.containers[1].resources.limits.memory: "12Qi" is not a quantity"#
        );
        let e = parse_err(&pod_with(
            "  volumes:\n    - name: v\n      emptyDir:\n        sizeLimit: lots\n",
            "",
        ));
        assert_eq!(
            e,
            r#"spec.volumes[0].emptyDir.sizeLimit: "lots" is not a quantity"#
        );
    }

    #[test]
    fn other_kinds_and_versions_are_refused() {
        let e = parse_err("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n");
        assert!(e.contains("\"Deployment\"") && e.contains("\"apps/v1\""), "{e}");
        let e = parse_err("apiVersion: v2\nkind: Pod\nmetadata:\n  name: d\n");
        assert!(e.contains("\"v2\""), "{e}");
        let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";
        let e = parse_err(&format!("{}---\n{svc}", pod_with("", "")));
        assert!(e.contains("document 2") && e.contains("\"Service\""), "{e}");
        assert!(parse_err("").contains("no Pod"));
    }

    #[test]
    fn one_pod_among_empty_documents_is_fine_two_are_not() {
        let one = format!("---\n---\n{}---\n", pod_with("", ""));
        assert_eq!(parse_ok(&one).pod.name, "p");
        let two = format!("{}---\n{}", pod_with("", ""), pod_with("", ""));
        let e = parse_err(&two);
        assert!(e.contains("documents 1 and 2 are both Pods"), "{e}");
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let e = parse_err("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n");
        assert!(e.contains("line"), "{e}");
        assert!(e.contains("column"), "{e}");
        // A type error names the path too.
        let e = parse_err(&pod_with("", "      tty: [yes]\n"));
        assert!(e.contains("spec.containers[0].tty"), "{e}");
        assert!(e.contains("line 9"), "{e}");
    }

    #[test]
    fn missing_name_and_image_are_errors() {
        let e = parse_err("apiVersion: v1\nkind: Pod\nmetadata: {}\nspec:\n  containers: []\n");
        assert_eq!(e, "metadata.name: required");
        let e = parse_err("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n");
        assert_eq!(e, "spec.containers: at least one container is required");
        let e = parse_err("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n");
        assert_eq!(e, "spec: required");
        let e = parse_err(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n",
        );
        assert_eq!(e, "spec.containers[0].image: required");
    }

    #[test]
    fn undefined_volume_names_container_and_volume() {
        let e = parse_err(&pod_with(
            "",
            "      volumeMounts:\n        - name: nope\n          mountPath: /x\n",
        ));
        assert!(e.starts_with("spec.containers[0].volumeMounts[0].name:"), "{e}");
        assert!(
            e.contains("container \"c\"") && e.contains("volume \"nope\""),
            "{e}"
        );
    }

    #[test]
    fn duplicate_container_names_are_refused_across_init_and_app() {
        let text = pod_with("  initContainers:\n    - name: c\n      image: busybox\n", "");
        assert_eq!(
            parse_err(&text),
            r#"spec.containers[0].name: container name "c" is used twice"#
        );
    }

    #[test]
    fn sub_path_may_not_climb_out() {
        let vol = "  volumes:\n    - name: v\n      emptyDir: {}\n";
        for bad in ["../etc", "a/../../etc", "/etc"] {
            let e = parse_err(&pod_with(
                vol,
                &format!(
                    "      volumeMounts:\n        - name: v\n          mountPath: /x\n          subPath: {bad}\n"
                ),
            ));
            assert!(
                e.starts_with("spec.containers[0].volumeMounts[0].subPath:"),
                "{e}"
            );
        }
    }

    #[test]
    fn field_errors_name_their_path() {
        let vol = "  volumes:\n    - name: v\n      hostPath:\n        path: /srv\n";
        let cases = [
            (
                pod_with(
                    vol,
                    "      volumeMounts:\n        - name: v\n          mountPath: /x\n          mountPropagation: Sideways\n",
                ),
                "spec.containers[0].volumeMounts[0].mountPropagation:",
            ),
            (
                pod_with(
                    "",
                    "      securityContext:\n        seccompProfile:\n          type: Strict\n",
                ),
                "spec.containers[0].securityContext.seccompProfile.type:",
            ),
            (
                pod_with(
                    "  securityContext:\n    seccompProfile:\n      type: Localhost\n",
                    "",
                ),
                "spec.securityContext.seccompProfile.localhostProfile:",
            ),
            (
                pod_with(
                    "  volumes:\n    - name: v\n      hostPath:\n        path: srv\n",
                    "",
                ),
                "spec.volumes[0].hostPath.path:",
            ),
            (
                pod_with(
                    "  volumes:\n    - name: v\n      hostPath:\n        path: /srv\n        type: Pipe\n",
                    "",
                ),
                "spec.volumes[0].hostPath.type:",
            ),
            (
                pod_with("  volumes:\n    - name: ../up\n      emptyDir: {}\n", ""),
                "spec.volumes[0].name:",
            ),
            (
                pod_with(
                    "  volumes:\n    - name: v\n      emptyDir: {}\n    - name: v\n      emptyDir: {}\n",
                    "",
                ),
                "spec.volumes[1].name:",
            ),
            (
                pod_with("", "      ports:\n        - containerPort: 70000\n"),
                "spec.containers[0].ports[0].containerPort:",
            ),
            (
                pod_with(
                    "",
                    "      ports:\n        - containerPort: 80\n          protocol: ICMP\n",
                ),
                "spec.containers[0].ports[0].protocol:",
            ),
            (
                pod_with(
                    "",
                    "      securityContext:\n        runAsUser: 0\n        runAsNonRoot: true\n",
                ),
                "spec.containers[0].securityContext.runAsNonRoot:",
            ),
            (
                pod_with(
                    "  volumes:\n    - name: m\n      emptyDir:\n        medium: Memory\n",
                    "      volumeMounts:\n        - name: m\n          mountPath: /m\n          subPath: a\n",
                ),
                "spec.containers[0].volumeMounts[0].subPath:",
            ),
        ];
        for (text, prefix) in cases {
            let e = parse_err(&text);
            assert!(e.starts_with(prefix), "{prefix} expected, got: {e}");
        }
    }

    #[test]
    fn unsupported_fields_become_warnings() {
        let spec = "  restartPolicy: Always\n  hostAliases: [{ip: 1.2.3.4, hostnames: [a]}]\n  securityContext:\n    fsGroup: 2000\n    runAsNonRoot: true\n  volumes:\n    - name: cm\n      configMap:\n        name: settings\n    - name: sec\n      secret:\n        secretName: creds\n    - name: data\n      persistentVolumeClaim:\n        claimName: data\n";
        let container = "      lifecycle:\n        preStop:\n          exec: {command: [sleep, '5']}\n      livenessProbe:\n        httpGet: {path: /, port: 80}\n      readinessProbe:\n        tcpSocket: {port: 80}\n      startupProbe:\n        exec: {command: [true]}\n      envFrom:\n        - configMapRef: {name: settings}\n      env:\n        - name: POD_NAME\n          valueFrom:\n            fieldRef: {fieldPath: metadata.name}\n        - name: KEPT\n          value: yes-it-is\n      resources:\n        limits:\n          nvidia.com/gpu: 1\n      volumeMounts:\n        - name: cm\n          mountPath: /etc/settings\n";
        let m = parse_ok(&pod_with(spec, container));
        let w = m.warnings.join("\n");
        for field in [
            "spec.restartPolicy:",
            "spec.hostAliases:",
            "spec.securityContext.fsGroup:",
            "spec.volumes[0].configMap:",
            "spec.volumes[1].secret:",
            "spec.volumes[2].persistentVolumeClaim:",
            "spec.containers[0].lifecycle:",
            "spec.containers[0].livenessProbe:",
            "spec.containers[0].readinessProbe:",
            "spec.containers[0].startupProbe:",
            "spec.containers[0].envFrom:",
            "spec.containers[0].env[0].valueFrom:",
            "spec.containers[0].resources.limits.nvidia.com/gpu:",
            "spec.containers[0].volumeMounts[0]:",
            "spec.containers[0].securityContext.runAsNonRoot:",
        ] {
            assert!(w.contains(field), "no warning for {field} in:\n{w}");
        }
        let c = &m.containers[0];
        assert_eq!(c.env, vec!["KEPT=yes-it-is"], "valueFrom is skipped");
        assert!(c.mounts.is_empty(), "a configMap volume is not mounted");
    }

    #[test]
    fn ignored_fields_do_not_warn() {
        let m = parse_ok(&pod_with(
            "  restartPolicy: Never\n  nodeSelector: {a: b}\n  tolerations: []\n  serviceAccountName: sa\n  terminationGracePeriodSeconds: 5\n",
            "      imagePullPolicy: Always\n      terminationMessagePolicy: File\n",
        ));
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    }

    #[test]
    fn host_namespaces_map_to_node() {
        let m = parse_ok(&pod_with(
            "  hostNetwork: true\n  hostPID: true\n  hostIPC: true\n  hostname: h\n",
            "      ports:\n        - containerPort: 80\n          hostPort: 80\n",
        ));
        let ns = &m.pod.namespaces;
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (NsMode::Node, NsMode::Node, NsMode::Node)
        );
        assert!(m.pod.port_mappings.is_empty(), "host network: nothing to forward");
        assert_eq!(m.pod.hostname, None, "host network: the host's name");
        assert!(m.warnings.iter().any(|w| w.starts_with("spec.hostname:")));
        assert_eq!(m.containers[0].security.namespaces.as_ref(), Some(ns));
    }

    #[test]
    fn share_process_namespace_means_one_pid_namespace() {
        let shared = parse_ok(&pod_with("  shareProcessNamespace: true\n", ""));
        assert_eq!(shared.pod.namespaces.pid, NsMode::Pod);
        let default = parse_ok(&pod_with("", ""));
        assert_eq!(default.pod.namespaces, NamespaceOptions::kubernetes());
        assert_eq!(default.pod.k8s_namespace, "default");
    }

    #[test]
    fn memory_empty_dir_in_two_containers_warns_it_is_not_shared() {
        let text = pod_with(
            "  volumes:\n    - name: m\n      emptyDir:\n        medium: Memory\n  initContainers:\n    - name: i\n      image: busybox\n      volumeMounts:\n        - name: m\n          mountPath: /m\n",
            "      volumeMounts:\n        - name: m\n          mountPath: /m\n",
        );
        let m = parse_ok(&text);
        assert!(m.empty_dirs.is_empty());
        assert_eq!(m.containers[0].mounts[0].kind, MountKind::Tmpfs);
        assert_eq!(m.containers[0].mounts[0].size, 0);
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains("volume \"m\"") && w.contains("i, c")),
            "{:?}",
            m.warnings
        );
    }

    fn host_path_manifest(volumes: &[(&str, PathBuf, HostPathType)]) -> PodManifest {
        let mut m = parse_ok(&pod_with("", ""));
        m.host_paths = volumes
            .iter()
            .map(|(name, path, kind)| HostPathVolume {
                name: (*name).into(),
                path: path.clone(),
                kind: *kind,
            })
            .collect();
        m.empty_dirs.clear();
        m.sub_paths.clear();
        m
    }

    #[test]
    fn prepare_creates_what_the_types_ask_for() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let made_dir = dir.join("a/b");
        let made_file = dir.join("c/f.conf");
        let m = host_path_manifest(&[
            ("d", made_dir.clone(), HostPathType::DirectoryOrCreate),
            ("f", made_file.clone(), HostPathType::FileOrCreate),
            ("any", dir.join("missing-but-unchecked"), HostPathType::Unchecked),
        ]);
        prepare_host_paths(&m).unwrap();
        assert!(made_dir.is_dir());
        assert!(made_file.is_file());
        assert!(!dir.join("missing-but-unchecked").exists());
        // Again: idempotent, and now they pass the existence checks too.
        prepare_host_paths(&m).unwrap();
    }

    #[test]
    fn prepare_checks_existing_types_and_names_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join("file");
        fs::write(&file, b"x").unwrap();
        let sock = dir.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();

        let ok = host_path_manifest(&[
            ("dir", dir.to_owned(), HostPathType::Directory),
            ("file", file.clone(), HostPathType::File),
            ("sock", sock.clone(), HostPathType::Socket),
            ("chr", "/dev/null".into(), HostPathType::CharDevice),
        ]);
        prepare_host_paths(&ok).unwrap();

        let cases = [
            (
                "missing",
                dir.join("nope"),
                HostPathType::Directory,
                "No such file",
            ),
            (
                "notdir",
                file.clone(),
                HostPathType::Directory,
                "is not a directory",
            ),
            ("notfile", dir.to_owned(), HostPathType::File, "is not a file"),
            ("notsock", file.clone(), HostPathType::Socket, "is not a socket"),
            (
                "notblk",
                "/dev/null".into(),
                HostPathType::BlockDevice,
                "is not a block device",
            ),
        ];
        for (name, path, kind, want) in cases {
            let m = host_path_manifest(&[(name, path, kind)]);
            let e = prepare_host_paths(&m).unwrap_err().to_string();
            assert!(e.starts_with(&format!("volume {name:?}")), "{e}");
            assert!(e.contains(want), "{want} expected, got: {e}");
        }
    }

    #[test]
    fn prepare_makes_empty_dirs_and_sub_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let volumes = tmp.path().join("volumes");
        let text = pod_with(
            "  volumes:\n    - name: cache\n      emptyDir: {}\n",
            "      volumeMounts:\n        - name: cache\n          mountPath: /c\n          subPath: x/y\n",
        );
        let m = parse(&text, &volumes).unwrap();
        prepare_host_paths(&m).unwrap();
        assert!(!volumes.exists(), "host paths leave the volumes dir alone");
        prepare_empty_dirs(&m).unwrap();
        let cache = volumes.join("cache");
        let mode = fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
        assert!(cache.join("x/y").is_dir());
    }

    #[test]
    fn prepare_host_paths_makes_sub_paths_below_host_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("srv");
        let text = pod_with(
            &format!(
                "  volumes:\n    - name: h\n      hostPath:\n        path: {}\n        type: DirectoryOrCreate\n",
                host.display()
            ),
            "      volumeMounts:\n        - name: h\n          mountPath: /s\n          subPath: logs\n",
        );
        let m = parse(&text, &tmp.path().join("volumes")).unwrap();
        prepare_host_paths(&m).unwrap();
        assert!(host.join("logs").is_dir());
    }

    #[test]
    fn prepare_refuses_a_sub_path_that_a_symlink_leads_out() {
        let tmp = tempfile::tempdir().unwrap();
        let volumes = tmp.path().join("volumes");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(volumes.join("cache")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, volumes.join("cache/escape")).unwrap();
        let text = pod_with(
            "  volumes:\n    - name: cache\n      emptyDir: {}\n",
            "      volumeMounts:\n        - name: cache\n          mountPath: /c\n          subPath: escape\n",
        );
        let m = parse(&text, &volumes).unwrap();
        let e = prepare_empty_dirs(&m).unwrap_err().to_string();
        assert!(e.contains("outside the volume") && e.contains("\"cache\""), "{e}");
    }

    #[test]
    fn variable_references_expand_as_the_kubelet_does() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
        };
        let v = vars(&[("A", "1"), ("B", "two"), ("A", "3")]);
        let table = [
            ("$(A)", "3"),
            ("x$(B)y", "xtwoy"),
            ("$$(A)", "$(A)"),
            ("$(MISSING)", "$(MISSING)"),
            ("$(A", "$(A"),
            ("cost: $5", "cost: $5"),
            ("trailing $", "trailing $"),
            ("$(B)$(B)", "twotwo"),
        ];
        for (input, want) in table {
            assert_eq!(expand(input, &v), want, "expanding {input:?}");
        }
        let m = parse_ok(&pod_with(
            "",
            "      command: [echo, \"$(GREETING)\", \"$(UNSET)\"]\n      args: [\"$$(GREETING)\"]\n      env:\n        - name: WHO\n          value: world\n        - name: GREETING\n          value: hello $(WHO)\n        - name: EARLY\n          value: $(LATE)\n        - name: LATE\n          value: late\n",
        ));
        let c = &m.containers[0];
        assert_eq!(c.command, vec!["echo", "hello world", "$(UNSET)"]);
        assert_eq!(c.args, vec!["$(GREETING)"]);
        assert_eq!(
            c.env,
            vec!["WHO=world", "GREETING=hello world", "EARLY=$(LATE)", "LATE=late"],
            "only earlier variables are expanded, in manifest order"
        );
    }

    #[test]
    fn hugepage_sizes_use_kernel_names() {
        assert_eq!(hugepage_size_name(2 << 20), "2MB");
        assert_eq!(hugepage_size_name(1 << 30), "1GB");
        assert_eq!(hugepage_size_name(64 << 10), "64KB");
    }
}
