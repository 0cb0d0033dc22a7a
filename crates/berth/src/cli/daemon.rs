//! `berth daemon`: the CRI v1 server on a Unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use super::Ctx;

#[derive(Args)]
pub struct DaemonArgs {
    /// The CRI socket: a path or a unix:// URL.
    /// Ignored when systemd passes the socket in (socket activation).
    #[arg(long, default_value = "unix:///run/berth/berth.sock")]
    pub socket: String,
    /// Where the streaming server (exec, attach, port-forward) listens;
    /// port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub stream_address: std::net::SocketAddr,
}

pub fn run(ctx: &Ctx, args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let socket = socket_path(&args.socket)?;
    // Before any thread starts: it edits the environment.
    let activated = activated()?;
    limit_malloc_arenas();
    let runtime = Arc::new(ctx.runtime()?);
    let images = Arc::new(ctx.images(None)?);
    let svc = berth_cri::CriService::new(runtime, images, registry_config(ctx), network_status(ctx));
    super::runtime()?.block_on(serve(svc, &socket, activated, args.stream_address))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    svc: berth_cri::CriService,
    socket: &Path,
    activated: Option<std::os::unix::net::UnixListener>,
    streams: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let (listener, owned) = match activated {
        Some(l) => (
            tokio::net::UnixListener::from_std(l)
                .context("activated socket (fd 3) is not a listening unix socket")?,
            false,
        ),
        None => (bind(socket)?, true),
    };
    let streams = svc
        .serve_streams(streams)
        .await
        .with_context(|| format!("serve streams on {streams}"))?;
    tracing::info!(socket = %socket.display(), %streams, activated = !owned, "serving CRI");
    notify_ready();
    tokio::spawn(trim_memory());
    let shutdown = async {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let result = berth_cri::serve(svc, listener, shutdown).await;
    // An activated socket belongs to systemd, which keeps listening on it.
    if owned {
        let _ = std::fs::remove_file(socket);
    }
    result.with_context(|| format!("serve CRI on {}", socket.display()))
}

/// Gives back the pages that only start-up or a past burst of calls used:
/// the executable's code pages (the kernel maps 64 KiB around every fault,
/// so 20 pod starts leave ~9 MiB of the binary resident) and the
/// allocator's free heap. Looked at four times a second and trimmed when the
/// resident set grew 3 MiB since the last trim (once more when a burst that
/// caused such a trim is over), and every minute; pages still in use come
/// back as minor faults from the page cache (~0.5 ms for the daemon's whole
/// working set).
async fn trim_memory() {
    use berth_runtime::monitor::memory::{ResidentSize, TrimPolicy, Trimmer};
    let policy = TrimPolicy::DAEMON;
    let resident = ResidentSize::open()
        .inspect_err(|e| tracing::warn!("{e}: memory trimmed every minute only"))
        .ok();
    let mut trimmer = Trimmer::new(policy, resident);
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The scheduled instant, not the clock: ticks an interval apart must
        // count as a full interval, however late each one ran.
        let now = tick.tick().await;
        if let Some(t) = trimmer.tick(now.into_std()) {
            tracing::debug!(
                reason = ?t.reason,
                before_kib = t.before >> 10,
                after_kib = t.after >> 10,
                "trimmed memory"
            );
        }
    }
}

/// glibc gives every thread that allocates an arena of its own (up to 8 per
/// core), and memory freed in an arena stays with the process. CRI calls run
/// on tokio's blocking pool, so a burst of pod starts left tens of MiB
/// behind in arenas of threads long gone; two arenas serve this daemon's
/// allocation rate without contention.
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread of ours exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The listening socket systemd passed in (`LISTEN_FDS`, fd 3), if it
/// passed one to this process.
fn activated() -> anyhow::Result<Option<std::os::unix::net::UnixListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count: u32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !for_us || count == 0 {
        return Ok(None);
    }
    anyhow::ensure!(
        count == 1,
        "systemd passed {count} sockets; berth serves CRI on exactly one"
    );
    // SAFETY: by the socket activation protocol fd 3 is ours, open and not
    // owned by anything else in this process.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(3) };
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    std_listener
        .set_nonblocking(true)
        .context("activated socket: set non-blocking")?;
    // Children (monitors, runtimes) must not see the variables: they were
    // meant for this process only.
    // SAFETY: `run` calls this before the daemon starts any thread.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    Ok(Some(std_listener))
}

/// Binds the socket, replacing a stale one (a daemon that died leaves it),
/// readable by root and the socket's group only.
fn bind(socket: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        anyhow::bail!("{} is in use: another daemon serves it", socket.display());
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove stale socket {}", socket.display()));
        }
        _ => {}
    }
    let listener =
        tokio::net::UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", socket.display()))?;
    Ok(listener)
}

fn socket_path(s: &str) -> anyhow::Result<PathBuf> {
    let path = s.strip_prefix("unix://").unwrap_or(s);
    anyhow::ensure!(
        path.starts_with('/'),
        "--socket {s:?}: give an absolute path or unix:///path"
    );
    Ok(PathBuf::from(path))
}

/// The registry client settings `Ctx::images` uses, for pulls that bring
/// their own credentials.
fn registry_config(ctx: &Ctx) -> berth_registry::ClientConfig {
    berth_registry::ClientConfig {
        certs_dir: ctx.config.registry.certs_dir.clone(),
        docker_config: ctx
            .config
            .registry
            .docker_config
            .clone()
            .or_else(berth_registry::auth::default_docker_config_path),
        creds: None,
        user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
    }
}

/// Network readiness for CRI Status: a default CNI network must be configured.
fn network_status(ctx: &Ctx) -> berth_cri::NetworkStatus {
    let c = &ctx.config.cni;
    let cni = berth_net::Cni::new(berth_net::CniConfig {
        conf_dirs: vec![c.conf_dir.clone()],
        bin_dirs: c.bin_dirs.clone(),
        cache_dir: c.cache_dir.clone().unwrap_or_else(|| ctx.config.root.join("cni")),
        timeout: std::time::Duration::from_secs(c.timeout),
    });
    Arc::new(move || {
        cni.default_network()
            .map(drop)
            .map_err(|e| format!("cni config not initialized: {e}"))
    })
}

/// Tells systemd (Type=notify) the socket is being served.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(b"READY=1", &addr)?;
        } else {
            sock.send_to(b"READY=1", &path)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!("sd_notify READY=1: {e}");
    }
}
