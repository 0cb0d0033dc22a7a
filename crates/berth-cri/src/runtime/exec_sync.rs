//! ExecSync: a command in a running container, its output captured; past
//! the timeout it is killed with everything it started.

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_runtime::runtime::ExecRequest;

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

/// Bound on each captured stream, as CRI-O and containerd cap ExecSync
/// output (16 MiB) so one command cannot exhaust the daemon.
const MAX_OUTPUT: u64 = 16 << 20;

/// How long to wait for the output pipes to close once the command ended.
const DRAIN: Duration = Duration::from_secs(2);

impl CriService {
    pub(crate) fn exec_sync(&self, req: v1::ExecSyncRequest) -> Result<v1::ExecSyncResponse, CriError> {
        let c = self.container(&req.container_id)?;
        // Kept until the command ends: dropping it removes the process file.
        let mut exec = self.runtime.exec_command(
            &c.id,
            &ExecRequest {
                args: req.cmd.clone(),
                ..Default::default()
            },
            None,
        )?;
        let cmd = &mut exec.command;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| CriError::Internal(format!("container {}: exec {:?}: {e}", c.id, req.cmd)))?;
        let stdout = drain(child.stdout.take().expect("piped"));
        let stderr = drain(child.stderr.take().expect("piped"));
        let deadline = (req.timeout > 0).then(|| Instant::now() + Duration::from_secs(req.timeout as u64));
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) => {}
                Err(e) => {
                    return Err(CriError::Internal(format!(
                        "container {}: wait for exec: {e}",
                        c.id
                    )));
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                kill_tree(child.id());
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let Some(status) = status else {
            return Err(CriError::DeadlineExceeded(format!(
                "container {}: command {:?} timed out after {}s",
                c.id, req.cmd, req.timeout
            )));
        };
        let exit_code = status
            .code()
            .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
        Ok(v1::ExecSyncResponse {
            stdout: stdout.recv_timeout(DRAIN).unwrap_or_default(),
            stderr: stderr.recv_timeout(DRAIN).unwrap_or_default(),
            exit_code,
        })
    }
}

/// Reads `r` to its end (or [`MAX_OUTPUT`]) on a thread of its own.
fn drain(r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut r = r.take(MAX_OUTPUT);
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// SIGKILLs `pid` and its descendants, children first found: the runtime's
/// exec process keeps the command as its child (runc and berth are child
/// subreapers), and killing only the runtime would leave the command running.
fn kill_tree(pid: u32) {
    let mut pids = vec![pid];
    let mut i = 0;
    while i < pids.len() {
        pids.extend(children(pids[i]));
        i += 1;
    }
    for p in pids {
        if let Some(p) = rustix::process::Pid::from_raw(p as i32) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

fn children(pid: u32) -> Vec<u32> {
    // Each thread has its own list: a Go runtime forks from any of them.
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
