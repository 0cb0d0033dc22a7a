//! The user's terminal wired to a container: attach through the monitor's
//! socket (`run -it`), or a pty received from the runtime (`exec -t`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use berth_runtime::monitor::{AttachClient, AttachFrame};
use rustix::termios::{self, OptionalActions, Termios};

/// Puts stdin in raw mode while alive, when it is a terminal.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = termios::tcsetattr(&stdin, OptionalActions::Now, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, t);
        }
    }
}

fn window_size() -> Option<(u16, u16)> {
    let ws = termios::tcgetwinsize(std::io::stdout()).ok()?;
    (ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Watches SIGWINCH; `changed()` says whether the window was resized since
/// the last call.
struct Winch(Arc<AtomicBool>);

impl Winch {
    fn new() -> anyhow::Result<Winch> {
        let flag = Arc::new(AtomicBool::new(true));
        signal_hook::flag::register(signal_hook::consts::SIGWINCH, flag.clone()).context("watch SIGWINCH")?;
        Ok(Winch(flag))
    }

    fn changed(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// Copies a container's output from its monitor to our stdout and stderr
/// until it exits; returns its exit code.
pub fn copy_output(client: AttachClient) -> anyhow::Result<Option<i32>> {
    pump(client, || {})
}

/// Writes each output frame to stdout or stderr, calling `each` before
/// every frame, until the exit frame (its code) or the end of the stream.
fn pump(mut client: AttachClient, mut each: impl FnMut()) -> anyhow::Result<Option<i32>> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    loop {
        let frame = client.recv()?;
        each();
        match frame {
            Some(AttachFrame::Stdout(b)) => {
                out.write_all(&b)?;
                out.flush()?;
            }
            Some(AttachFrame::Stderr(b)) => {
                err.write_all(&b)?;
                err.flush()?;
            }
            Some(AttachFrame::Exit(code)) => return Ok(Some(code)),
            Some(_) => {}
            None => return Ok(None),
        }
    }
}

/// Attaches the terminal to a container's monitor until the container exits.
pub fn attach(client: AttachClient, tty: bool) -> anyhow::Result<Option<i32>> {
    let _raw = tty.then(RawMode::enter);
    let mut input = client.try_clone()?;
    // stdin is copied by a thread that ends with the process: a blocking
    // read of the terminal cannot be interrupted portably.
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = input.close_stdin();
                    return;
                }
                Ok(n) => {
                    if input.send_stdin(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let winch = if tty { Some(Winch::new()?) } else { None };
    let mut resizer = client.try_clone()?;
    let mut resize = move || {
        if let Some(w) = &winch
            && w.changed()
            && let Some((rows, cols)) = window_size()
        {
            let _ = resizer.resize(rows, cols);
        }
    };
    resize();
    pump(client, resize)
}

/// Runs a runtime `exec` that was given `--console-socket socket --detach
/// --pid-file pid_file`: receives the pty master, waits for the runtime to
/// hand the process over (this process is its child subreaper, so the
/// detached process becomes our child), proxies the terminal to the pty and
/// returns the process' exit code.
pub fn run_with_console(
    mut cmd: Command,
    socket: &Path,
    pid_file: &Path,
    stdin: bool,
) -> anyhow::Result<i32> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .context("become child subreaper")?;
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .with_context(|| format!("bind console socket {}", socket.display()))?;
    cmd.stdin(std::process::Stdio::null());
    let mut child = cmd.spawn().context("start the runtime's exec")?;
    let master = match accept_master(&listener, &mut child) {
        Ok(Some(m)) => m,
        Ok(None) => {
            let st = child.wait().context("wait for the runtime's exec")?;
            anyhow::bail!("the runtime's exec failed ({st})");
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let st = child.wait().context("wait for the runtime's exec")?;
    anyhow::ensure!(st.success(), "the runtime's exec failed ({st})");
    let pid: i32 = std::fs::read_to_string(pid_file)
        .with_context(|| format!("read {}", pid_file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{}: not a pid", pid_file.display()))?;
    let _raw = stdin.then(RawMode::enter);
    let winch = Winch::new()?;
    let resize = |m: &OwnedFd| {
        if winch.changed()
            && let Some((rows, cols)) = window_size()
        {
            let ws = termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let _ = termios::tcsetwinsize(m, ws);
        }
    };
    resize(&master);
    if stdin {
        let mut to_pty = std::fs::File::from(master.try_clone()?);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut to_pty);
        });
    }
    let mut from_pty = std::fs::File::from(master.try_clone()?);
    let mut out = std::io::stdout();
    let mut buf = [0u8; 8192];
    loop {
        resize(&master);
        match from_pty.read(&mut buf) {
            // EIO: every slave end closed, the process is gone.
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.write_all(&buf[..n])?;
                out.flush()?;
            }
        }
    }
    let status = rustix::process::waitpid(
        rustix::process::Pid::from_raw(pid),
        rustix::process::WaitOptions::empty(),
    )
    .context("wait for the exec'd process")?
    .map(|(_, s)| s);
    Ok(match status {
        Some(s) if s.exited() => s.exit_status().unwrap_or(0),
        Some(s) => 128 + s.terminating_signal().unwrap_or(0),
        None => 0,
    })
}

/// The pty master the runtime sends over the console socket, or `None` when
/// the runtime exits first (it failed; its stderr says why).
fn accept_master(
    listener: &std::os::unix::net::UnixListener,
    child: &mut std::process::Child,
) -> anyhow::Result<Option<OwnedFd>> {
    listener.set_nonblocking(true)?;
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if child.try_wait()?.is_some() {
                    return Ok(None);
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => return Err(e).context("accept on the console socket"),
        }
    };
    conn.set_nonblocking(false)?;
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    rustix::net::recvmsg(
        conn.as_fd(),
        &mut iov,
        &mut anc,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .context("receive the pty from the console socket")?;
    for msg in anc.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(Some(fd));
        }
    }
    anyhow::bail!("the runtime sent no pty over the console socket")
}
