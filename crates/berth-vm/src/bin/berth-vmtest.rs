//! berth-vmtest: runs one command in a throwaway cgroup v2 guest whose root
//! is this host's root (read-only through virtio-fs, a tmpfs overlay on
//! top), streams the guest's console to stdout and exits with the command's
//! status. Nothing is left behind: QEMU and virtiofsd are stopped by PID and
//! the temporary directory removed, on a timeout and on SIGINT/SIGTERM too.
//!
//! Exit status: the command's; 124 on timeout; 125 when the guest failed
//! before the command ended (boot, setup, QEMU); 128+N on signal N.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_vm::initramfs::Compression;
use berth_vm::kernel::{self, GuestKernel};
use berth_vm::qemu::{Accel, Qemu, VirtioFs};
use berth_vm::testvm::{self, GuestSetup, Marker};
use berth_vm::virtiofsd::{Virtiofsd, VirtiofsdConfig};
use rustix::process::Signal;

const USAGE: &str = "\
usage: berth-vmtest [OPTIONS] [--] COMMAND [ARG...]
  --kernel-dir DIR   unpacked guest kernel (default $BERTH_GUEST_KERNEL_DIR or /usr/local/lib/berth/guest-kernel)
  --memory MIB       guest memory (default 2560)
  --cpus N           guest vCPUs (default 2)
  --accel tcg|kvm    (default tcg)
  --timeout SECS     kill the guest after this long (default 600)
  --console FILE     write the guest console to FILE instead of stdout
  --workdir DIR      the command's working directory (default: the current one)
  --env NAME=VALUE   export to the command (repeatable); PATH, HOME, and
                     BERTH_TEST_*, RUST_*, CARGO_TERM_* of this process pass by default
  --append ARG       add to the guest kernel's command line (repeatable)
  --module NAME      load this module in the initramfs too (repeatable)
  --disk MIB         attach an empty scratch disk of this size as /dev/vda (virtio-blk)
  --gzip             gzip the initramfs (default: uncompressed, faster to boot under TCG)
  --cache MODE       virtiofsd cache policy (default always: see below)
  --qemu PATH, --virtiofsd PATH, --busybox PATH
";

struct Opts {
    kernel_dir: PathBuf,
    memory_mib: u32,
    cpus: u32,
    accel: Accel,
    timeout: Duration,
    console: Option<PathBuf>,
    workdir: PathBuf,
    env: Vec<(String, String)>,
    append: Vec<String>,
    modules: Vec<String>,
    compression: Compression,
    disk_mib: Option<u64>,
    cache: String,
    qemu: PathBuf,
    virtiofsd: PathBuf,
    busybox: PathBuf,
    command: Vec<OsString>,
}

fn parse_args() -> anyhow::Result<Opts> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k == "PATH"
                || k == "HOME"
                || k.starts_with("BERTH_TEST_")
                || k.starts_with("RUST_")
                || k.starts_with("CARGO_TERM_")
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), "/root".into()));
    }
    let mut o = Opts {
        kernel_dir: std::env::var_os("BERTH_GUEST_KERNEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| kernel::DEFAULT_DIR.into()),
        memory_mib: 2560,
        cpus: 2,
        accel: Accel::Tcg,
        timeout: Duration::from_secs(600),
        console: None,
        workdir: std::env::current_dir().context("current directory")?,
        env,
        append: Vec::new(),
        modules: testvm::ROOT_MODULES.iter().map(|s| s.to_string()).collect(),
        compression: Compression::None,
        disk_mib: None,
        cache: "always".into(),
        qemu: "qemu-system-x86_64".into(),
        virtiofsd: "virtiofsd".into(),
        busybox: "/bin/busybox".into(),
        command: Vec::new(),
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let s = a.to_string_lossy().into_owned();
        if s == "--" {
            o.command.extend(args.by_ref());
            break;
        }
        if !s.starts_with("--") {
            o.command.push(a);
            o.command.extend(args.by_ref());
            break;
        }
        if s == "--help" || s == "-h" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        if s == "--gzip" {
            o.compression = Compression::Gzip;
            continue;
        }
        let v = args
            .next()
            .with_context(|| format!("{s} needs a value\n{USAGE}"))?;
        let vs = v.to_string_lossy().into_owned();
        let num = |what: &str| {
            vs.parse::<u64>()
                .with_context(|| format!("{what} {vs:?}: not a number"))
        };
        match s.as_str() {
            "--kernel-dir" => o.kernel_dir = v.into(),
            "--memory" => o.memory_mib = num("--memory")? as u32,
            "--cpus" => o.cpus = num("--cpus")? as u32,
            "--accel" => o.accel = vs.parse().map_err(anyhow::Error::msg)?,
            "--timeout" => o.timeout = Duration::from_secs(num("--timeout")?),
            "--console" => o.console = Some(v.into()),
            "--workdir" => o.workdir = v.into(),
            "--env" => {
                let (k, val) = vs
                    .split_once('=')
                    .with_context(|| format!("--env {vs:?}: expected NAME=VALUE"))?;
                o.env.retain(|(name, _)| name != k);
                o.env.push((k.into(), val.into()));
            }
            "--append" => o.append.push(vs),
            "--module" => o.modules.push(vs),
            "--cache" => o.cache = vs,
            "--disk" => o.disk_mib = Some(num("--disk")?),
            "--qemu" => o.qemu = v.into(),
            "--virtiofsd" => o.virtiofsd = v.into(),
            "--busybox" => o.busybox = v.into(),
            _ => bail!("unknown option {s}\n{USAGE}"),
        }
    }
    if o.command.is_empty() {
        bail!("no command given\n{USAGE}");
    }
    Ok(o)
}

fn say(msg: std::fmt::Arguments) {
    eprintln!("berth-vmtest: {msg}");
}

fn nonce() -> anyhow::Result<String> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

enum End {
    /// The guest reported the command's status.
    Exit(i32),
    Timeout,
    Signal(i32),
    /// The guest failed to set up, or QEMU ended without a status.
    Failed(String),
}

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            say(format_args!("{e:#}"));
            125
        }
    };
    std::process::exit(code);
}

fn run() -> anyhow::Result<i32> {
    let o = parse_args()?;
    // Registered before any child exists, so no signal finds a VM that
    // nobody stops.
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize).context("signal handler")?;
    }

    let kernel = GuestKernel::find(&o.kernel_dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("berth-vmtest.")
        .tempdir()
        .context("temporary directory")?;
    let nonce = nonce()?;
    let mut modules = o.modules.clone();
    let disk = tmp.path().join("scratch.img");
    if let Some(mib) = o.disk_mib {
        // Sparse: costs host disk only for what the guest writes.
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(mib << 20))
            .with_context(|| format!("creating {}", disk.display()))?;
        // no udev in the guest to load the driver when the device appears
        modules.push("virtio_blk".into());
    }
    let setup = GuestSetup {
        kernel: kernel.clone(),
        busybox: o.busybox.clone(),
        modules,
        command: o.command.clone(),
        workdir: o.workdir.clone(),
        env: o.env.clone(),
        nonce: nonce.clone(),
    };
    let initrd = tmp.path().join("initramfs.cpio");
    setup.write_initramfs(&initrd, o.compression)?;

    let socket = tmp.path().join("virtiofsd.sock");
    let vlog = tmp.path().join("virtiofsd.log");
    let mut vcfg = VirtiofsdConfig::new("/".as_ref(), &socket);
    vcfg.binary = o.virtiofsd.clone();
    vcfg.readonly = true;
    // The guest's overlay sits on the share; the host's own submounts
    // (/proc, /sys, /dev) are covered by the guest's anyway.
    vcfg.announce_submounts = false;
    // The host may replace files while the guest runs (a rebuild in a shared
    // target dir). overlayfs answers ESTALE for a lower file whose
    // revalidation finds another inode; with cache=always the guest keeps
    // what it looked up first, and with O_PATH fds (no file handles)
    // virtiofsd keeps even a deleted file's inode readable.
    vcfg.extra_args.push("--inode-file-handles=never".into());
    vcfg.cache = o.cache.clone();
    vcfg.log = Some(vlog.clone());
    let started = Instant::now();
    let mut virtiofsd = Virtiofsd::start(&vcfg, Duration::from_secs(10))?;

    let mut q = Qemu::new(&kernel.image(), &initrd);
    q.binary = o.qemu.clone();
    q.accel = o.accel;
    q.memory_mib = o.memory_mib;
    q.cpus = o.cpus;
    // Pure cgroup v2, as on hosts booted by a current systemd; `quiet`
    // keeps the boot log short (a slow serial console under TCG).
    q.append = vec!["cgroup_no_v1=all".into(), "quiet".into()];
    q.append.extend(o.append.iter().cloned());
    q.virtio_fs.push(VirtioFs {
        socket: socket.clone(),
        tag: testvm::FS_TAG.into(),
    });
    if o.disk_mib.is_some() {
        q.disks.push(disk.clone());
    }
    let mut cmd = q.command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    berth_vm::process::own_group(&mut cmd);
    let mut qemu = cmd
        .spawn()
        .with_context(|| format!("starting {}", o.qemu.display()))?;
    say(format_args!(
        "guest kernel {}, {} MiB, {} vCPUs, {}; qemu pid {}, virtiofsd pid {}",
        kernel.version(),
        o.memory_mib,
        o.cpus,
        o.accel.as_str(),
        qemu.id(),
        virtiofsd.pid().unwrap_or(0)
    ));

    // The console: copied line by line, markers passed to the main loop.
    let mut out: Box<dyn Write + Send> = match &o.console {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(std::io::stdout()),
    };
    let (tx, rx) = mpsc::channel();
    let stdout = qemu.stdout.take().expect("piped");
    let reader_nonce = nonce.clone();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line);
            let _ = out.write_all(text.trim_end_matches(['\r', '\n']).as_bytes());
            let _ = out.write_all(b"\n");
            let _ = out.flush();
            if let Some(m) = testvm::parse_marker(&text, &reader_nonce) {
                let _ = tx.send((Instant::now(), m));
            }
            line.clear();
        }
    });

    let mut end = None;
    let mut ready_at = None;
    let mut handle = |at: Instant, m: Marker, end: &mut Option<End>| match m {
        Marker::Ready { uptime } => {
            ready_at = Some(at);
            say(format_args!(
                "command started {:.2} s after virtiofsd and QEMU started (guest uptime {uptime} s)",
                at.duration_since(started).as_secs_f64()
            ));
        }
        Marker::Exit { status } => *end = Some(End::Exit(status)),
        Marker::Fail { what } => *end = Some(End::Failed(format!("guest setup failed: {what}"))),
    };
    loop {
        if let Ok((at, m)) = rx.recv_timeout(Duration::from_millis(100)) {
            handle(at, m, &mut end);
        }
        let sig = signal.load(Ordering::Relaxed);
        if sig != 0 {
            end = Some(End::Signal(sig as i32));
            break;
        }
        if qemu.try_wait().context("waiting for QEMU")?.is_some() {
            break;
        }
        if started.elapsed() > o.timeout {
            end = Some(End::Timeout);
            break;
        }
        // After the status line the guest syncs and powers off at once;
        // one that does not is not waited for.
        if matches!(end, Some(End::Exit(_) | End::Failed(_))) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && qemu.try_wait().context("waiting for QEMU")?.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
    }
    let qemu_status = qemu.try_wait().ok().flatten();
    berth_vm::process::stop(&mut qemu, Signal::TERM, Duration::from_secs(2)).context("stopping QEMU")?;
    // QEMU is gone, so its stdout ends and the reader drains what was left.
    let _ = reader.join();
    while let Ok((at, m)) = rx.try_recv() {
        if end.is_none() || matches!(m, Marker::Exit { .. }) {
            handle(at, m, &mut end);
        }
    }
    virtiofsd.stop()?;
    let total = started.elapsed().as_secs_f64();
    if let Some(r) = ready_at {
        say(format_args!(
            "command ran {:.1} s; {total:.1} s in all",
            r.elapsed().as_secs_f64()
        ));
    }
    let code = match end {
        Some(End::Exit(status)) => {
            say(format_args!("guest command exited with {status}"));
            status
        }
        Some(End::Timeout) => {
            say(format_args!("timeout after {:?}: guest killed", o.timeout));
            124
        }
        Some(End::Signal(sig)) => {
            say(format_args!("signal {sig}: guest killed"));
            128 + sig
        }
        Some(End::Failed(what)) => {
            say(format_args!("{what}"));
            125
        }
        None => {
            let log = std::fs::read_to_string(&vlog).unwrap_or_default();
            say(format_args!(
                "QEMU ended ({}) without the command's status; virtiofsd said:\n{log}",
                qemu_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "killed".into())
            ));
            125
        }
    };
    drop(tmp);
    Ok(code)
}
