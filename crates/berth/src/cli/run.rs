//! `berth run`: a pod from images or a Pod manifest, with no daemon (rkt's
//! model). Foreground by default: the apps' output streams to the terminal,
//! the command exits with the main app's exit code, and SIGINT/SIGTERM stop
//! the pod gracefully — so `ExecStart=berth run …` in a systemd unit keeps the
//! pod attached to the unit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_runtime::Runtime;
use berth_runtime::model::{
    ContainerConfig, Mount, MountKind, NsMode, PodConfig, PortMapping, Propagation, Resources, Seccomp,
    SecurityContext,
};
use berth_runtime::monitor::AttachClient;
use berth_runtime::runtime::{ContainerState, PodRecord, ResolvedImage};
use clap::Args;

use super::{Ctx, images_for_pods, manifest, terminal};

/// Annotation naming the app whose exit code is the pod's.
pub const MAIN_APP: &str = "berth.main-app";

/// Placeholder volumes dir of a manifest's emptyDirs until the pod exists.
const PENDING_VOLUMES: &str = "/berth-pending-volumes";

#[derive(Args)]
pub struct RunArgs {
    /// Image of the pod's only app (or use --app / -f).
    pub image: Option<String>,
    /// Command and arguments, replacing the image's (for every --app).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// An app of the pod, by image; repeat for more apps. The first is the main app.
    #[arg(long = "app", value_name = "IMAGE")]
    pub apps: Vec<String>,
    /// A Kubernetes Pod manifest (YAML) to run as it is.
    #[arg(short = 'f', long = "file", conflicts_with_all = ["image", "apps"])]
    pub file: Option<PathBuf>,
    /// Pod name [default: from the image].
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable KEY=VALUE for every app.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// User (UID[:GID], or a name from the image's /etc/passwd).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the apps.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Mount: HOST:CONTAINER[:ro|rw], or type=bind|tmpfs,src=..,dst=..[,ro][,size=..].
    #[arg(long = "mount", short = 'v')]
    pub mounts: Vec<String>,
    /// Memory limit per app (bytes, or with k, m, g).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory plus swap per app (bytes, or with k, m, g), at least the
    /// memory limit; -1 for unlimited swap. Unset, an app with a memory
    /// limit gets no swap, as Kubernetes pods do (docker's default would
    /// allow as much swap again as --memory).
    #[arg(long, allow_hyphen_values = true, value_name = "BYTES|-1")]
    pub memory_swap: Option<String>,
    /// CPU limit per app, in CPUs (0.5 = half a CPU).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes per app.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Capabilities to add (e.g. NET_ADMIN) or ALL.
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Mount the apps' root filesystems read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Give the apps every capability and device; no seccomp filter.
    #[arg(long)]
    pub privileged: bool,
    /// Seccomp: runtime-default (the default), unconfined, or a profile file.
    #[arg(long, default_value = "runtime-default")]
    pub seccomp: String,
    /// One PID namespace for all apps of the pod, held by berth's pod init.
    #[arg(long)]
    pub share_pid: bool,
    /// Network: the default CNI network, `host` (the host's), `none`
    /// (loopback only), or a CNI network by name.
    #[arg(long)]
    pub net: Option<String>,
    /// Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp].
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Hostname [default: the pod name].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Runtime handler (berth, runc, crun, or a configured one).
    #[arg(long)]
    pub runtime: Option<String>,
    /// Detach: print the pod id and leave it running.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open and attach it to the main app.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the main app a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Remove the pod when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Seconds the apps get between the stop signal and SIGKILL.
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
    /// Print no pull progress.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(ctx: &Ctx, a: RunArgs) -> anyhow::Result<ExitCode> {
    if a.detach && a.rm {
        bail!("--rm and --detach do not go together: a detached pod is removed with `berth rm`");
    }
    let images = ctx.images(None)?;
    let rt = ctx.runtime()?;
    let (pod_cfg, inits, apps, volumes) = plan(&a)?;

    // Pull what is missing before anything is created: nothing to undo if a pull fails.
    let mut resolved: BTreeMap<String, ResolvedImage> = BTreeMap::new();
    for c in inits.iter().chain(&apps) {
        if !resolved.contains_key(&c.image) {
            let r = images_for_pods::ensure(&images, &ctx.namespace, &c.image, a.quiet || a.detach)?;
            resolved.insert(c.image.clone(), r);
        }
    }

    let pod = rt.run_pod(ctx.namespace.as_str(), pod_cfg)?;
    let started = create_apps(&rt, &pod, &inits, &apps, &resolved, volumes).and_then(|ids| {
        // In the foreground every app's output comes through its monitor's
        // attach socket, connected before the start so nothing is missed.
        let mut clients = Vec::new();
        if !a.detach {
            for id in &ids {
                clients.push(AttachClient::connect(&rt.attach_socket(id))?);
            }
        }
        for id in &ids {
            rt.start_container(id)?;
        }
        Ok((ids, clients))
    });
    let (ids, clients) = match started {
        Ok(r) => r,
        Err(e) => {
            if let Err(e2) = rt.remove_pod(&pod.id) {
                tracing::warn!(pod = %pod.id, "cleanup after a failed start: {e2:#}");
            }
            return Err(e);
        }
    };
    if a.detach {
        println!("{}", pod.id);
        return Ok(ExitCode::SUCCESS);
    }
    let code = foreground(&rt, &pod, &ids[0], &a, clients);
    if a.rm {
        rt.remove_pod(&pod.id).context("remove the pod (--rm)")?;
    }
    code
}

/// The pod, its init containers, its apps, and a manifest's volumes.
type Plan = (
    PodConfig,
    Vec<ContainerConfig>,
    Vec<ContainerConfig>,
    Option<manifest::PodManifest>,
);

/// The pod and its containers from the flags or the manifest.
fn plan(a: &RunArgs) -> anyhow::Result<Plan> {
    let (mut pod, inits, mut apps, dirs) = if let Some(file) = &a.file {
        let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        // emptyDirs live in the pod's volumes dir, known once the pod
        // exists: `start_apps` moves them there.
        let m = manifest::parse(&text, std::path::Path::new(PENDING_VOLUMES))
            .with_context(|| format!("{}", file.display()))?;
        for w in &m.warnings {
            eprintln!("berth: warning: {}: {w}", file.display());
        }
        manifest::prepare_host_paths(&m)?;
        let mut m = m;
        let (pod, inits, apps) = (
            m.pod.clone(),
            std::mem::take(&mut m.init_containers),
            std::mem::take(&mut m.containers),
        );
        (pod, inits, apps, Some(m))
    } else {
        let mut args = a.args.clone();
        let images: Vec<String> = match (&a.image, a.apps.is_empty()) {
            (Some(i), true) => vec![i.clone()],
            (None, false) => a.apps.clone(),
            // With --app, the first positional word is the command.
            (Some(cmd), false) => {
                args.insert(0, cmd.clone());
                a.apps.clone()
            }
            (None, true) => bail!("nothing to run: give an IMAGE, --app IMAGE or -f POD.yaml"),
        };
        let mut apps = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let mut name = app_name(img);
            if apps.iter().any(|c: &ContainerConfig| c.name == name) {
                name = format!("{name}-{}", i + 1);
            }
            apps.push(ContainerConfig {
                name,
                image: img.clone(),
                args: args.clone(),
                ..Default::default()
            });
        }
        // `berth run IMAGE -- CMD…` replaces the entrypoint too: the command
        // is what the user typed. With several --app, every app runs it.
        for app in &mut apps {
            app.command = std::mem::take(&mut app.args);
        }
        let name = a
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", apps[0].name, &berth_runtime::runtime::new_id()[..6]));
        let pod = PodConfig {
            name,
            namespaces: berth_runtime::model::NamespaceOptions::kubernetes(),
            ..Default::default()
        };
        (pod, Vec::new(), apps, None)
    };
    if let Some(n) = &a.name {
        pod.name = n.clone();
    }
    if a.hostname.is_some() {
        pod.hostname = a.hostname.clone();
    }
    if let Some(r) = &a.runtime {
        pod.runtime_handler = r.clone();
    }
    match a.net.as_deref() {
        None => {}
        Some("host") => {
            pod.namespaces.network = NsMode::Node;
            pod.network = None;
        }
        Some(name) => pod.network = Some(name.to_string()),
    }
    for p in &a.publish {
        pod.port_mappings
            .push(parse_publish(p).with_context(|| format!("--publish {p:?}"))?);
    }
    if !pod.port_mappings.is_empty() && pod.namespaces.network == NsMode::Node {
        bail!("ports cannot be published for a pod on the host's network: it uses the host's ports directly");
    }
    if a.share_pid {
        pod.namespaces.pid = NsMode::Pod;
    }
    // A privileged app needs a privileged pod (as in containerd).
    pod.privileged |= a.privileged || apps.iter().chain(&inits).any(|c| c.security.privileged);
    let main = apps.first().context("the pod has no containers")?.name.clone();
    pod.annotations.insert(MAIN_APP.into(), main);

    // Flags apply to every app (of a manifest too: they refine it).
    let memory = a
        .memory
        .as_deref()
        .map(parse_bytes)
        .transpose()
        .context("--memory")?;
    let memory_swap = match a.memory_swap.as_deref() {
        None => None,
        Some("-1") => Some(-1),
        Some(v) => Some(parse_bytes(v).with_context(|| format!("--memory-swap {v:?}"))? as i64),
    };
    let mounts = a
        .mounts
        .iter()
        .map(|m| parse_mount(m).with_context(|| format!("--mount {m:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let seccomp = match a.seccomp.as_str() {
        "runtime-default" | "RuntimeDefault" => Seccomp::RuntimeDefault,
        "unconfined" | "Unconfined" => Seccomp::Unconfined,
        path => Seccomp::Localhost(path.into()),
    };
    for (i, c) in apps.iter_mut().enumerate() {
        c.env.extend(a.env.iter().cloned());
        if a.workdir.is_some() {
            c.working_dir = a.workdir.clone();
        }
        c.mounts.extend(mounts.iter().cloned());
        apply_user(&mut c.security, a.user.as_deref())?;
        let r: &mut Resources = &mut c.resources;
        if let Some(m) = memory {
            r.memory_limit = m as i64;
        }
        if let Some(swap) = memory_swap {
            // Memory and swap together: meaningless without a memory limit
            // (of the flag, or the manifest's), never below it.
            if r.memory_limit <= 0 {
                bail!(
                    "--memory-swap {}: app {} has no memory limit: give --memory too",
                    a.memory_swap.as_deref().unwrap_or_default(),
                    c.name
                );
            }
            if swap != -1 && swap < r.memory_limit {
                bail!(
                    "--memory-swap {}: below the memory limit {} of app {} (it counts memory and swap together)",
                    a.memory_swap.as_deref().unwrap_or_default(),
                    r.memory_limit,
                    c.name
                );
            }
            r.memory_swap = swap;
        }
        if let Some(cpus) = a.cpus {
            if cpus.is_nan() || cpus <= 0.0 {
                bail!("--cpus {cpus}: must be more than 0");
            }
            r.cpu_period = 100_000;
            r.cpu_quota = (cpus * 100_000.0).round() as i64;
        }
        if let Some(p) = a.pids_limit {
            r.pids_limit = p;
        }
        let s = &mut c.security;
        s.add_capabilities.extend(a.cap_add.iter().cloned());
        s.drop_capabilities.extend(a.cap_drop.iter().cloned());
        s.readonly_rootfs |= a.read_only;
        s.privileged |= a.privileged;
        if s.seccomp.is_none() {
            s.seccomp = Some(seccomp.clone());
        }
        if i == 0 {
            c.tty |= a.tty;
            c.stdin |= a.interactive;
            c.stdin_once |= a.interactive;
        }
    }
    Ok((pod, inits, apps, dirs))
}

fn apply_user(s: &mut SecurityContext, user: Option<&str>) -> anyhow::Result<()> {
    let Some(u) = user else { return Ok(()) };
    let (user, group) = match u.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (u, None),
    };
    match user.parse::<u32>() {
        Ok(uid) => s.run_as_user = Some(uid),
        Err(_) => s.run_as_username = Some(user.to_string()),
    }
    if let Some(g) = group {
        s.run_as_group = Some(
            g.parse()
                .with_context(|| format!("--user {u:?}: group must be numeric"))?,
        );
    }
    Ok(())
}

/// Runs the init containers one by one to success, then creates the apps
/// (not started). Returns their ids, the main app's first.
fn create_apps(
    rt: &Runtime,
    pod: &PodRecord,
    inits: &[ContainerConfig],
    apps: &[ContainerConfig],
    images: &BTreeMap<String, ResolvedImage>,
    manifest_volumes: Option<manifest::PodManifest>,
) -> anyhow::Result<Vec<String>> {
    let volumes = rt.pod_volumes_dir(&pod.id);
    let moved = |p: &std::path::Path| match p.strip_prefix(PENDING_VOLUMES) {
        Ok(rest) => volumes.join(rest),
        Err(_) => p.to_path_buf(),
    };
    if let Some(mut m) = manifest_volumes {
        for d in &mut m.empty_dirs {
            d.path = moved(&d.path);
        }
        for sp in &mut m.sub_paths {
            sp.base = moved(&sp.base);
            sp.path = moved(&sp.path);
        }
        manifest::prepare_empty_dirs(&m)?;
    }
    let place = |c: &ContainerConfig| {
        let mut c = c.clone();
        for m in &mut c.mounts {
            if let MountKind::Bind(p) = &mut m.kind {
                *p = moved(p);
            }
        }
        c
    };
    let inits: Vec<ContainerConfig> = inits.iter().map(place).collect();
    let apps: Vec<ContainerConfig> = apps.iter().map(place).collect();
    for c in &inits {
        let rec = rt.create_container(&pod.id, c.clone(), &images[&c.image])?;
        rt.start_container(&rec.id)?;
        let exit = wait_exit(rt, &rec.id, None)?;
        if exit != 0 {
            bail!("init container {} exited with {exit}", c.name);
        }
    }
    let mut ids = Vec::new();
    for c in &apps {
        ids.push(rt.create_container(&pod.id, c.clone(), &images[&c.image])?.id);
    }
    Ok(ids)
}

/// Waits until container `id` exits; returns its exit code.
fn wait_exit(rt: &Runtime, id: &str, stop: Option<&AtomicBool>) -> anyhow::Result<i32> {
    let exit_file = rt.exit_file(id);
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(e) = berth_runtime::monitor::read_exit(&exit_file)? {
            return Ok(e.code);
        }
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            bail!("interrupted");
        }
        let rec = rt.get_container(id)?;
        if rt.container_status(&rec)?.state == ContainerState::Unknown {
            bail!("container {id}: its monitor is gone and left no exit record");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Streams the apps' output until the main app exits or a signal asks the
/// pod to stop; returns the main app's exit code.
fn foreground(
    rt: &Runtime,
    pod: &PodRecord,
    main_id: &str,
    a: &RunArgs,
    clients: Vec<AttachClient>,
) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("install signal handler")?;
    }
    let grace = Duration::from_secs(a.stop_timeout);
    let (tx, rx) = std::sync::mpsc::channel::<i32>();
    let code = std::thread::scope(|s| -> anyhow::Result<i32> {
        for (i, client) in clients.into_iter().enumerate() {
            let tx = (i == 0).then(|| tx.clone());
            let interactive = i == 0 && (a.tty || a.interactive);
            let tty = i == 0 && a.tty;
            s.spawn(move || {
                let r = if interactive {
                    terminal::attach(client, tty)
                } else {
                    terminal::copy_output(client)
                };
                match r {
                    Ok(Some(code)) => {
                        if let Some(tx) = tx {
                            let _ = tx.send(code);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("attach: {e:#}"),
                }
            });
        }
        drop(tx);
        let exit_file = rt.exit_file(main_id);
        let mut stopping = false;
        let code = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(code) => break code,
                // The main app's monitor went away without telling us.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break wait_exit(rt, main_id, None)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(e) = berth_runtime::monitor::read_exit(&exit_file)? {
                break e.code;
            }
            if !stopping && stop.load(Ordering::Relaxed) {
                stopping = true;
                rt.stop_pod(&pod.id, grace)?;
            }
        };
        // The pod ends with its main app.
        rt.stop_pod(&pod.id, grace)?;
        Ok(code)
    })?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn app_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split(['@', ':']).next().unwrap_or(base);
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() { "app".into() } else { name }
}

/// `64m`, `1g`, `512k`, `1048576`.
pub fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let m = match s[i..].to_ascii_lowercase().trim_end_matches(['b', 'i']) {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                u => bail!("{s:?}: unknown unit {u:?} (use k, m, g)"),
            };
            (&s[..i], m)
        }
        None => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("{s:?} is not a size"))?;
    n.checked_mul(mult).with_context(|| format!("{s:?} is too large"))
}

/// `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`.
fn parse_publish(s: &str) -> anyhow::Result<PortMapping> {
    let (ports, proto) = match s.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    anyhow::ensure!(
        matches!(proto.as_str(), "tcp" | "udp" | "sctp"),
        "protocol {proto:?}: use tcp, udp or sctp"
    );
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    let (host_ip, host, ctr) = match parts.as_slice() {
        [ctr, host] => (String::new(), *host, *ctr),
        [ctr, host, ip] => (ip.trim_matches(['[', ']']).to_string(), *host, *ctr),
        _ => bail!("use [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]"),
    };
    let port = |what: &str, v: &str| -> anyhow::Result<u16> {
        match v.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => bail!("{what} port {v:?} is not a port number (1-65535)"),
        }
    };
    if !host_ip.is_empty() {
        host_ip
            .parse::<std::net::IpAddr>()
            .with_context(|| format!("host IP {host_ip:?}"))?;
    }
    Ok(PortMapping {
        protocol: proto,
        container_port: port("container", ctr)?,
        host_port: port("host", host)?,
        host_ip,
    })
}

fn parse_mount(s: &str) -> anyhow::Result<Mount> {
    if s.contains('=') {
        let mut kind = "bind";
        let (mut src, mut dst, mut ro, mut size, mut prop) = (None, None, false, 0, Propagation::Private);
        for part in s.split(',') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "type" => {
                    kind = if v == "tmpfs" {
                        "tmpfs"
                    } else if v == "bind" {
                        "bind"
                    } else {
                        bail!("type {v:?}: use bind or tmpfs")
                    }
                }
                "src" | "source" => src = Some(v.to_string()),
                "dst" | "destination" | "target" => dst = Some(v.to_string()),
                "ro" | "readonly" => ro = v.is_empty() || v == "true",
                "size" => size = parse_bytes(v)?,
                "propagation" | "bind-propagation" => {
                    prop = match v {
                        "private" | "rprivate" => Propagation::Private,
                        "rslave" | "slave" => Propagation::HostToContainer,
                        "rshared" | "shared" => Propagation::Bidirectional,
                        _ => bail!("propagation {v:?}: use private, rslave or rshared"),
                    }
                }
                _ => bail!("unknown mount option {k:?}"),
            }
        }
        let destination = dst.context("dst= is missing")?;
        let kind = if kind == "tmpfs" {
            MountKind::Tmpfs
        } else {
            MountKind::Bind(absolute(&src.context("src= is missing")?)?)
        };
        return Ok(Mount {
            destination,
            kind,
            readonly: ro,
            propagation: prop,
            size,
            recursive_readonly: false,
        });
    }
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => bail!("use HOST:CONTAINER[:ro|rw] or type=…,src=…,dst=…"),
    };
    Ok(Mount {
        destination: dst.to_string(),
        kind: MountKind::Bind(absolute(src)?),
        readonly: ro,
        propagation: Propagation::Private,
        size: 0,
        recursive_readonly: false,
    })
}

fn absolute(p: &str) -> anyhow::Result<PathBuf> {
    let path = std::path::absolute(p).with_context(|| format!("host path {p:?}"))?;
    anyhow::ensure!(path.exists(), "host path {} does not exist", path.display());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_mounts() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("5x").unwrap_err().to_string().contains("\"x\""));
        let m = parse_mount("/tmp:/data:ro").unwrap();
        assert_eq!(m.destination, "/data");
        assert!(m.readonly);
        let t = parse_mount("type=tmpfs,dst=/scratch,size=1m").unwrap();
        assert_eq!((t.kind, t.size), (MountKind::Tmpfs, 1 << 20));
        assert!(parse_mount("/nonexistent-berth:/x").is_err());
        assert!(
            parse_mount("type=bind,dst=/x")
                .unwrap_err()
                .to_string()
                .contains("src=")
        );
    }

    fn plan_of(args: &[&str]) -> anyhow::Result<Vec<Resources>> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(std::iter::once("run").chain(args.iter().copied()))?;
        let (_, _, apps, _) = plan(&cli.run)?;
        Ok(apps.into_iter().map(|c| c.resources).collect())
    }

    #[test]
    fn memory_swap_follows_dockers_flag_with_no_swap_by_default() {
        let r = &plan_of(&["--memory", "64m", "busybox"]).unwrap()[0];
        assert_eq!((r.memory_limit, r.memory_swap), (64 << 20, 0), "0: no swap");
        let r = &plan_of(&["--memory", "64m", "--memory-swap", "96m", "busybox"]).unwrap()[0];
        assert_eq!(r.memory_swap, 96 << 20);
        let r = &plan_of(&["--memory", "64m", "--memory-swap", "-1", "busybox"]).unwrap()[0];
        assert_eq!(r.memory_swap, -1);
        let r = &plan_of(&["--memory", "64m", "--memory-swap", "64m", "busybox"]).unwrap()[0];
        assert_eq!(r.memory_swap, 64 << 20);
        let err = plan_of(&["--memory", "64m", "--memory-swap", "32m", "busybox"]).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("--memory-swap 32m") && err.contains("below"),
            "{err}"
        );
        let err = format!("{:#}", plan_of(&["--memory-swap", "96m", "busybox"]).unwrap_err());
        assert!(
            err.contains("--memory-swap 96m") && err.contains("--memory"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            plan_of(&["--memory", "64m", "--memory-swap", "lots", "busybox"]).unwrap_err()
        );
        assert!(err.contains("--memory-swap \"lots\""), "{err}");
    }

    #[test]
    fn published_ports() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            (
                p.host_port,
                p.container_port,
                p.protocol.as_str(),
                p.host_ip.as_str()
            ),
            (8080, 80, "tcp", "")
        );
        let p = parse_publish("127.0.0.1:53:5353/UDP").unwrap();
        assert_eq!(
            (
                p.host_port,
                p.container_port,
                p.protocol.as_str(),
                p.host_ip.as_str()
            ),
            (53, 5353, "udp", "127.0.0.1")
        );
        assert!(parse_publish("80").unwrap_err().to_string().contains("HOST_PORT"));
        assert!(
            parse_publish("0:80")
                .unwrap_err()
                .to_string()
                .contains("host port \"0\"")
        );
        assert!(
            parse_publish("1:2/icmp")
                .unwrap_err()
                .to_string()
                .contains("\"icmp\"")
        );
        assert!(
            parse_publish("nothost:1:2")
                .unwrap_err()
                .to_string()
                .contains("host IP")
        );
    }

    #[test]
    fn app_names_come_from_images() {
        assert_eq!(app_name("127.0.0.1:5123/busybox:latest"), "busybox");
        assert_eq!(app_name("docker.io/library/Redis@sha256:ab"), "redis");
    }
}
