//! The monitor process itself: create the container through the runtime,
//! then copy its output, serve attach clients and record its exit.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::attach::{self, HEADER_LEN};
use super::exit::{ExitRecord, oom_killed, write_atomic};
use super::{
    MAX_CLIENT_BACKLOG, MAX_CLIENT_PAYLOAD, MonitorConfig, PID_FILE, SYNC_FD_ENV, SyncReport, read_config,
};
use crate::logs::{LogWriter, Stream, now_rfc3339nano};

/// How long output may still arrive after the container's init exited:
/// another process may hold the write end of its pipes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long departing clients get to take the last output and the exit.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an unterminated line waits for its newline before it is logged
/// as a `P` record.
const PARTIAL_FLUSH_MS: i32 = 50;
/// Stdin bytes buffered for the container before clients are not read.
const STDIN_BACKLOG: usize = 64 * 1024;
/// Runtime output kept for the error report of a failed `create`.
const CREATE_OUTPUT_LIMIT: usize = 16 * 1024;
/// Read buffer for the container's output.
const READ_CHUNK: usize = 32 * 1024;
const CONSOLE_SOCKET: &str = "console.sock";
const ERROR_FILE: &str = "monitor.err";
/// The runtime's (CRIU's) work directory for a restore.
const RESTORE_WORK: &str = "restore-work";

/// The monitor's main: `berth monitor DIR`. Must be called before the
/// process has any other thread, since it forks. Returns the exit code.
pub fn run(dir: &Path) -> i32 {
    let sync = take_sync_fd();
    let cfg = match read_config(dir) {
        Ok(cfg) => cfg,
        Err(e) => {
            report(sync, &failed(None, e.to_string()));
            return 1;
        }
    };
    // Fork once more so the starter reaps only this short-lived process and
    // the monitor is reparented away from it.
    // SAFETY: the process is single-threaded here (documented requirement).
    match unsafe { libc::fork() } {
        -1 => {
            let e = std::io::Error::last_os_error();
            report(sync, &failed(None, format!("cannot fork the monitor: {e}")));
            return 1;
        }
        // SAFETY: _exit skips destructors that belong to the child now.
        pid if pid > 0 => unsafe { libc::_exit(0) },
        _ => {}
    }
    close_inherited_fds(sync.as_ref().map(|f| f.as_raw_fd()));
    // Holding the starter's working directory could keep a mount busy.
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let _ = std::env::set_current_dir("/");
    let dir = dir.as_path();
    let mut monitor = match Monitor::create(dir, cfg) {
        Ok(m) => m,
        Err(f) => {
            remove_quietly(&dir.join(CONSOLE_SOCKET));
            report(sync, &f);
            return 1;
        }
    };
    report(
        sync,
        &SyncReport::Created {
            monitor_pid: std::process::id(),
            container_pid: monitor.container_pid as u32,
        },
    );
    super::memory::release_startup_pages();
    match monitor.serve() {
        Ok(()) => 0,
        Err(e) => {
            note_error(dir, &e);
            1
        }
    }
}

fn failed(status: Option<i32>, message: String) -> SyncReport {
    SyncReport::Failed { status, message }
}

fn take_sync_fd() -> Option<OwnedFd> {
    let fd: RawFd = std::env::var(SYNC_FD_ENV).ok()?.parse().ok()?;
    // SAFETY: F_GETFD only checks that the fd is open.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the starter handed this fd to us and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // The runtime and the container must not hold it, or the starter would
    // never see EOF.
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    Some(owned)
}

fn report(sync: Option<OwnedFd>, what: &SyncReport) {
    if let Some(fd) = sync {
        let data = serde_json::to_vec(what).expect("SyncReport serializes");
        let _ = std::fs::File::from(fd).write_all(&data);
    }
}

/// Whatever fds a careless starter leaked stay out of the monitor, the
/// runtime and the container.
fn close_inherited_fds(keep: Option<RawFd>) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in fds.into_iter().filter(|&fd| fd > 2 && Some(fd) != keep) {
        // SAFETY: nothing in this fresh process owns these fds (the one
        // read_dir used is closed already; closing it again fails harmlessly).
        unsafe { libc::close(fd) };
    }
}

fn note_error(dir: &Path, e: &std::io::Error) {
    let _ = std::fs::write(dir.join(ERROR_FILE), format!("{e}\n"));
}

fn remove_quietly(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn io_context(what: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// The first client ever connected (matters for `stdin_once`).
    first: bool,
    gone: bool,
}

struct Monitor {
    dir: PathBuf,
    cfg: MonitorConfig,
    signals: OwnedFd,
    log: LogWriter,
    listener: UnixListener,
    /// stdout and stderr pipes; with a tty the pty master is `out[0]`.
    out: [Option<OwnedFd>; 2],
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    stdin_closing: bool,
    /// A dup of the pty master, for resizing.
    pty: Option<OwnedFd>,
    clients: Vec<Client>,
    clients_seen: bool,
    container_pid: i32,
    exit_status: Option<i32>,
    drain_until: Option<Instant>,
}

impl Monitor {
    /// Everything up to the runtime's successful `create`.
    fn create(dir: &Path, cfg: MonitorConfig) -> Result<Self, SyncReport> {
        let setup = |what: &str, e: std::io::Error| failed(None, format!("{what}: {e}"));
        // SAFETY: plain prctl; orphaned descendants (the container's init
        // once the runtime's create exits) are reparented to us.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
            return Err(setup("subreaper", std::io::Error::last_os_error()));
        }
        let signals = block_signals().map_err(|e| setup("signalfd", e))?;
        let _ = std::fs::write(dir.join(PID_FILE), std::process::id().to_string());
        let log = LogWriter::open(&cfg.log_path)
            .map_err(|e| setup(&format!("log {}", cfg.log_path.display()), e))?;
        remove_quietly(&cfg.socket);
        let listener = UnixListener::bind(&cfg.socket)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| setup(&format!("attach socket {}", cfg.socket.display()), e))?;
        let mut monitor = Monitor {
            dir: dir.to_owned(),
            cfg,
            signals,
            log,
            listener,
            out: [None, None],
            stdin: None,
            stdin_buf: Vec::new(),
            stdin_closing: false,
            pty: None,
            clients: Vec::new(),
            clients_seen: false,
            container_pid: 0,
            exit_status: None,
            drain_until: None,
        };
        if let Err(f) = monitor.run_create() {
            remove_quietly(&monitor.cfg.socket);
            return Err(f);
        }
        Ok(monitor)
    }

    fn run_create(&mut self) -> Result<(), SyncReport> {
        let setup = |what: &str, e: std::io::Error| failed(None, format!("{what}: {e}"));
        let cfg = self.cfg.clone();
        let mut cmd = Command::new(&cfg.runtime[0]);
        cmd.args(&cfg.runtime[1..]);
        let verb = match &cfg.restore {
            None => {
                cmd.arg("create");
                "create"
            }
            // runc's restore: detached, so the restored init is reparented
            // to us (the nearest subreaper) once CRIU is done; the flags
            // the checkpoint was taken with are needed again.
            Some(images) => {
                cmd.arg("restore")
                    .arg("--image-path")
                    .arg(images)
                    .arg("--work-path")
                    .arg(self.dir.join(RESTORE_WORK))
                    .args(["--detach", "--file-locks", "--tcp-established"]);
                "restore"
            }
        };
        cmd.arg("--bundle")
            .arg(&cfg.bundle)
            .arg("--pid-file")
            .arg(&cfg.pid_file)
            .env_remove(SYNC_FD_ENV);
        let console_path = self.dir.join(CONSOLE_SOCKET);
        let mut console = None;
        // The runtime's own output, read while create runs: with pipes it is
        // the container's stdout/stderr, with a tty a pipe of its own.
        let mut capture: Vec<OwnedFd> = Vec::new();
        if cfg.tty {
            remove_quietly(&console_path);
            let l = UnixListener::bind(&console_path)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| setup("console socket", e))?;
            console = Some(l);
            cmd.arg("--console-socket").arg(&console_path);
            let (r, w) = pipe().map_err(|e| setup("pipe", e))?;
            let w2 = w.try_clone().map_err(|e| setup("pipe", e))?;
            cmd.stdin(Stdio::null()).stdout(w).stderr(w2);
            capture.push(r);
        } else {
            let (out_r, out_w) = pipe().map_err(|e| setup("stdout pipe", e))?;
            let (err_r, err_w) = pipe().map_err(|e| setup("stderr pipe", e))?;
            cmd.stdout(out_w).stderr(err_w);
            if cfg.stdin {
                let (in_r, in_w) = pipe().map_err(|e| setup("stdin pipe", e))?;
                cmd.stdin(in_r);
                self.stdin = Some(in_w);
            } else {
                cmd.stdin(Stdio::null());
            }
            self.out = [Some(out_r), Some(err_r)];
        }
        cmd.arg(&cfg.id);
        // The signals the monitor reads from its signalfd are blocked here;
        // a blocked mask survives exec, and a runtime that does not reset it
        // (youki's libcontainer) would hand it to the container, whose init
        // would then never see SIGTERM.
        // SAFETY: sigemptyset and sigprocmask are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| failed(None, format!("cannot run runtime {}: {e}", cfg.runtime[0])))?;
        let runtime_pid = child.id() as i32;
        // Our copies of the child's ends must go, or EOF never comes.
        drop(cmd);
        drop(child);

        let mut output = Vec::new();
        let mut reaped: Vec<(i32, i32)> = Vec::new();
        let status = loop {
            if let Some(&(_, status)) = reaped.iter().find(|(pid, _)| *pid == runtime_pid) {
                break status;
            }
            let mut fds = vec![pollfd(self.signals.as_fd(), libc::POLLIN)];
            let capture_fds: Vec<BorrowedFd<'_>> = if cfg.tty {
                capture.iter().map(|f| f.as_fd()).collect()
            } else {
                self.out.iter().flatten().map(|f| f.as_fd()).collect()
            };
            fds.extend(capture_fds.iter().map(|f| pollfd(*f, libc::POLLIN)));
            if let Some(l) = &console {
                fds.push(pollfd(l.as_fd(), libc::POLLIN));
            }
            poll(&mut fds, -1).map_err(|e| setup("poll", e))?;
            for f in &capture_fds {
                capture_output(*f, &mut output);
            }
            if let Some(l) = &console
                && self.pty.is_none()
            {
                self.pty = receive_console(l).map_err(|e| setup("console socket", e))?;
            }
            drain_signalfd(&self.signals);
            reap(&mut reaped);
        };
        for f in &capture {
            capture_output(f.as_fd(), &mut output);
        }
        if !cfg.tty {
            for f in self.out.iter().flatten() {
                capture_output(f.as_fd(), &mut output);
            }
        }
        remove_quietly(&console_path);
        if status != 0 {
            let code = ExitRecord::from_wait_status(status, String::new(), false).code;
            let text = String::from_utf8_lossy(&output).trim().to_owned();
            let message = if text.is_empty() {
                format!("{} {verb} exited with status {code}", cfg.runtime[0])
            } else {
                text
            };
            return Err(failed(Some(code), message));
        }
        let pid_text = std::fs::read_to_string(&cfg.pid_file)
            .map_err(|e| setup(&format!("pid file {}", cfg.pid_file.display()), e))?;
        self.container_pid = pid_text.trim().parse().map_err(|_| {
            failed(
                None,
                format!("pid file {} holds {pid_text:?}", cfg.pid_file.display()),
            )
        })?;
        if cfg.tty {
            let master = self.pty.take().ok_or_else(|| {
                failed(
                    None,
                    "the runtime sent no pty master on the console socket".into(),
                )
            })?;
            let dup = |f: &OwnedFd| f.try_clone().map_err(|e| setup("pty", e));
            if cfg.stdin {
                self.stdin = Some(dup(&master)?);
            }
            self.pty = Some(dup(&master)?);
            self.out[0] = Some(master);
        }
        // The init cannot have exited already unless something killed it
        // between create and now; its status was reaped above then.
        if let Some(&(_, status)) = reaped.iter().find(|(p, _)| *p == self.container_pid) {
            self.container_exited(status);
        }
        Ok(())
    }

    /// The poll loop after a successful create; returns once the exit is
    /// recorded.
    fn serve(&mut self) -> std::io::Result<()> {
        // Never zeroed: only the pages that output actually reaches become
        // resident.
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        loop {
            if self.finished() {
                return self.finish();
            }
            fds.clear();
            slots.clear();
            let mut add = |slot: Slot, fd: BorrowedFd<'_>, events: i16| {
                slots.push(slot);
                fds.push(pollfd(fd, events));
            };
            add(Slot::Signals, self.signals.as_fd(), libc::POLLIN);
            for (i, f) in self.out.iter().enumerate() {
                if let Some(f) = f {
                    add(Slot::Out(i), f.as_fd(), libc::POLLIN);
                }
            }
            if let Some(f) = &self.stdin
                && !self.stdin_buf.is_empty()
            {
                add(Slot::Stdin, f.as_fd(), libc::POLLOUT);
            }
            add(Slot::Listener, self.listener.as_fd(), libc::POLLIN);
            let want_input = self.stdin_buf.len() < STDIN_BACKLOG;
            for (i, c) in self.clients.iter().enumerate() {
                let mut ev = if want_input { libc::POLLIN } else { 0 };
                if !c.output.is_empty() {
                    ev |= libc::POLLOUT;
                }
                add(Slot::Client(i), c.stream.as_fd(), ev);
            }
            let ready = poll(&mut fds, self.poll_timeout())?;
            if ready == 0 && self.log.has_pending() {
                let _ = self.log.flush_partial();
            }
            for (slot, fd) in slots.iter().zip(&fds) {
                if fd.revents != 0 {
                    self.handle(*slot, fd.revents, &mut buf);
                }
            }
            self.clients.retain(|c| !c.gone);
        }
    }

    fn poll_timeout(&self) -> i32 {
        let mut timeout = -1;
        if self.log.has_pending() {
            timeout = PARTIAL_FLUSH_MS;
        }
        if let Some(until) = self.drain_until {
            let left = until.saturating_duration_since(Instant::now()).as_millis() as i32 + 1;
            timeout = if timeout < 0 { left } else { timeout.min(left) };
        }
        timeout
    }

    fn finished(&self) -> bool {
        self.exit_status.is_some()
            && (self.out.iter().all(Option::is_none) || self.drain_until.is_some_and(|u| Instant::now() >= u))
    }

    fn handle(&mut self, slot: Slot, revents: i16, buf: &mut Vec<u8>) {
        match slot {
            Slot::Signals => {
                drain_signalfd(&self.signals);
                let mut reaped = Vec::new();
                reap(&mut reaped);
                if let Some(&(_, status)) = reaped.iter().find(|(p, _)| *p == self.container_pid) {
                    self.container_exited(status);
                }
            }
            Slot::Out(i) => self.read_output(i, buf),
            Slot::Stdin => self.write_stdin(),
            Slot::Listener => self.accept_clients(),
            Slot::Client(i) => {
                if revents & libc::POLLOUT != 0 {
                    flush_client(&mut self.clients[i]);
                }
                if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    self.read_client(i);
                }
                if self.clients[i].gone {
                    self.client_left(i);
                }
            }
        }
    }

    fn container_exited(&mut self, status: i32) {
        self.exit_status = Some(status);
        self.drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
        self.stdin = None;
        self.stdin_buf = Vec::new();
    }

    fn read_output(&mut self, i: usize, buf: &mut Vec<u8>) {
        let Some(fd) = &self.out[i] else { return };
        buf.clear();
        match rustix::io::read(fd, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => self.out[i] = None,
            Ok(n) => {
                let stream = if i == 0 { Stream::Stdout } else { Stream::Stderr };
                let _ = self.log.write(stream, &buf[..n]);
                let kind = if i == 0 {
                    attach::KIND_STDOUT
                } else {
                    attach::KIND_STDERR
                };
                self.broadcast(kind, &buf[..n]);
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
            // EIO: every slave side of the pty is closed.
            Err(_) => self.out[i] = None,
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = &self.stdin else { return };
        match rustix::io::write(fd, &self.stdin_buf) {
            Ok(n) => {
                self.stdin_buf.drain(..n);
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                self.stdin = None;
                self.stdin_buf.clear();
            }
        }
        if self.stdin_closing && self.stdin_buf.is_empty() {
            self.stdin = None;
        }
    }

    fn close_stdin(&mut self) {
        self.stdin_closing = true;
        if self.stdin_buf.is_empty() {
            self.stdin = None;
        }
    }

    fn accept_clients(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut client = Client {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                first: !self.clients_seen,
                gone: false,
            };
            // From here on the client gets every byte of output: tell it,
            // so a caller that starts the container after connecting
            // misses nothing printed before this accept.
            queue(&mut client, attach::KIND_ATTACHED, &[]);
            flush_client(&mut client);
            self.clients.push(client);
            self.clients_seen = true;
        }
    }

    fn read_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let have = c.input.len();
        c.input.resize(HEADER_LEN + MAX_CLIENT_PAYLOAD, 0);
        match c.stream.read(&mut c.input[have..]) {
            Ok(0) => {
                c.gone = true;
                c.input.clear();
                return;
            }
            Ok(n) => c.input.truncate(have + n),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                c.input.truncate(have);
                return;
            }
            Err(_) => {
                c.gone = true;
                c.input.clear();
                return;
            }
        }
        self.handle_frames(i);
    }

    fn handle_frames(&mut self, i: usize) {
        loop {
            let c = &mut self.clients[i];
            if c.input.len() < HEADER_LEN {
                break;
            }
            let kind = c.input[0];
            let len = u32::from_be_bytes([c.input[1], c.input[2], c.input[3], c.input[4]]) as usize;
            if len > MAX_CLIENT_PAYLOAD {
                c.gone = true;
                break;
            }
            if c.input.len() < HEADER_LEN + len {
                break;
            }
            let frame: Vec<u8> = c.input.drain(..HEADER_LEN + len).skip(HEADER_LEN).collect();
            self.client_frame(i, kind, &frame);
        }
        let c = &mut self.clients[i];
        if c.input.is_empty() {
            // Idle clients hold no buffer.
            c.input = Vec::new();
        }
    }

    fn client_frame(&mut self, i: usize, kind: u8, payload: &[u8]) {
        match kind {
            attach::KIND_STDIN => {
                if self.stdin.is_some() && !self.stdin_closing {
                    self.stdin_buf.extend_from_slice(payload);
                }
            }
            attach::KIND_CLOSE_STDIN => self.close_stdin(),
            attach::KIND_RESIZE if payload.len() == 4 => {
                if let Some(pty) = &self.pty {
                    let size = rustix::termios::Winsize {
                        ws_row: u16::from_be_bytes([payload[0], payload[1]]),
                        ws_col: u16::from_be_bytes([payload[2], payload[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    let _ = rustix::termios::tcsetwinsize(pty, size);
                }
            }
            attach::KIND_REOPEN_LOG => {
                let answer = match self.log.reopen() {
                    Ok(()) => String::new(),
                    Err(e) => format!("log {}: {e}", self.cfg.log_path.display()),
                };
                queue(&mut self.clients[i], attach::KIND_LOG_REOPENED, answer.as_bytes());
            }
            _ => self.clients[i].gone = true,
        }
    }

    fn client_left(&mut self, i: usize) {
        if self.cfg.stdin_once && self.clients[i].first {
            self.close_stdin();
        }
    }

    fn broadcast(&mut self, kind: u8, data: &[u8]) {
        for c in &mut self.clients {
            queue(c, kind, data);
            flush_client(c);
        }
        let once = self.cfg.stdin_once;
        let mut close = false;
        for c in self.clients.iter().filter(|c| c.gone) {
            close |= once && c.first;
        }
        if close {
            self.close_stdin();
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        let _ = self.log.flush_partial();
        let status = self.exit_status.unwrap_or(0);
        let record = ExitRecord::from_wait_status(status, now_rfc3339nano(), oom_killed(&self.cfg.oom_files));
        let data = serde_json::to_vec(&record).expect("ExitRecord serializes");
        let written = write_atomic(&self.cfg.exit_file, &data)
            .map_err(|e| io_context("exit file", &self.cfg.exit_file, e));
        self.broadcast(attach::KIND_EXIT, &record.code.to_be_bytes());
        self.farewell();
        remove_quietly(&self.cfg.socket);
        written
    }

    /// Gives connected clients a bounded chance to take what is queued.
    fn farewell(&mut self) {
        let until = Instant::now() + FAREWELL_TIMEOUT;
        loop {
            self.clients.retain(|c| !c.gone && !c.output.is_empty());
            let left = until.saturating_duration_since(Instant::now());
            if self.clients.is_empty() || left.is_zero() {
                return;
            }
            let mut fds: Vec<_> = self
                .clients
                .iter()
                .map(|c| pollfd(c.stream.as_fd(), libc::POLLOUT))
                .collect();
            if poll(&mut fds, left.as_millis() as i32 + 1).is_err() {
                return;
            }
            for c in &mut self.clients {
                flush_client(c);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Signals,
    Out(usize),
    Stdin,
    Listener,
    Client(usize),
}

fn queue(c: &mut Client, kind: u8, data: &[u8]) {
    if c.gone {
        return;
    }
    if c.output.len() + HEADER_LEN + data.len() > MAX_CLIENT_BACKLOG {
        c.gone = true;
        c.output = Vec::new();
        return;
    }
    c.output.extend_from_slice(&attach::header(kind, data.len()));
    c.output.extend_from_slice(data);
}

fn flush_client(c: &mut Client) {
    while !c.output.is_empty() && !c.gone {
        match rustix::net::send(&c.stream, &c.output, rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) => {
                c.output.drain(..n);
            }
            Err(rustix::io::Errno::AGAIN) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => c.gone = true,
        }
    }
    if c.output.is_empty() {
        c.output = Vec::new();
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::PipeFlags;
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    // Only our end is non-blocking; the container's end stays blocking.
    rustix::fs::fcntl_setfl(&r, rustix::fs::OFlags::NONBLOCK)?;
    Ok((r, w))
}

fn pollfd(fd: BorrowedFd<'_>, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> std::io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Blocks the signals the monitor handles or ignores and returns a
/// signalfd for them. Blocked rather than ignored: a blocked mask is reset
/// for the runtime by `Command`, an ignored disposition would be inherited
/// by the container.
fn block_signals() -> std::io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local set; signalfd returns a new fd
    // that we own; resetting dispositions of a single-threaded process.
    unsafe {
        // Dispositions set to ignore by whoever started us would be
        // inherited by the runtime and the container.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGCHLD,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGPIPE,
        ] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn drain_signalfd(fd: &OwnedFd) {
    let mut buf = [0u8; 8 * std::mem::size_of::<libc::signalfd_siginfo>()];
    while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// Reaps every exited child without blocking.
fn reap(reaped: &mut Vec<(i32, i32)>) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        reaped.push((pid, status));
    }
}

fn capture_output(fd: BorrowedFd<'_>, output: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = rustix::io::read(fd, &mut buf) {
        let room = CREATE_OUTPUT_LIMIT.saturating_sub(output.len());
        output.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Takes the pty master the runtime sends (with the terminal's name as
/// data) on the console socket.
fn receive_console(listener: &UnixListener) -> std::io::Result<Option<OwnedFd>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let stream = match listener.accept() {
        Ok((s, _)) => s,
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    stream.set_nonblocking(false)?;
    // A runtime that connects and never sends must not hang the monitor.
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut name = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    rustix::net::recvmsg(&stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
            return Ok(Some(fd));
        }
    }
    Err(std::io::Error::new(
        ErrorKind::InvalidData,
        "a message without a file descriptor",
    ))
}
