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

/// How long [`kill_tree`] waits for killed processes to be reaped by their
/// parents before it kills the rest regardless.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// SIGKILLs `pid` and its descendants, deepest first. The runtime's exec
/// process (`pid`) reaps the command, its child: killed first, it would
/// leave the command to be reparented to the host's init or a subreaper that
/// need not reap, and a zombie `sleep` would stay visible in the container.
/// So each round kills the live leaves and waits until the runtime has
/// reaped those that are its children (deeper zombies wait for their own
/// parent, killed in a later round, to hand them to the container's init);
/// the runtime goes last.
fn kill_tree(pid: u32) {
    let give_up = Instant::now() + REAP_WAIT;
    loop {
        let live: Vec<u32> = descendants(pid).into_iter().filter(|p| !is_zombie(*p)).collect();
        let leaves: Vec<u32> = live
            .iter()
            .copied()
            .filter(|p| children(*p).iter().all(|c| is_zombie(*c)))
            .collect();
        if leaves.is_empty() || Instant::now() >= give_up {
            // Nothing runs below the runtime any more, or it will not reap:
            // kill whatever remains, the runtime with it.
            live.iter().for_each(|p| kill(*p));
            break;
        }
        leaves.iter().for_each(|p| kill(*p));
        while leaves.iter().any(|p| unsettled(*p, pid)) && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Its last children reaped, the runtime has nothing left to hand over.
    while !children(pid).is_empty() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(pid);
}

/// Every process below `pid`, parents before their children.
fn descendants(pid: u32) -> Vec<u32> {
    let mut pids = children(pid);
    let mut i = 0;
    while i < pids.len() {
        pids.extend(children(pids[i]));
        i += 1;
    }
    pids
}

fn kill(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// A killed process still waiting for what its death needs: to be reaped
/// when `runtime` is its parent, to become a zombie otherwise.
fn unsettled(pid: u32, runtime: u32) -> bool {
    match stat(pid) {
        None => false,
        Some((state, ppid)) => ppid == runtime || state != 'Z',
    }
}

fn is_zombie(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state == 'Z')
}

/// State letter and parent pid from /proc/<pid>/stat; `None` once the
/// process is gone (reaped).
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip past the last ')'.
    let mut rest = s[s.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills the test's processes on drop so a failing test leaves none behind.
    struct Procs(std::process::Child, Vec<u32>);

    impl Drop for Procs {
        fn drop(&mut self) {
            self.1.iter().for_each(|p| kill(*p));
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn kill_tree_kills_leaves_before_the_process_that_reaps_them() {
        // sh stands in for the runtime's exec process: it reaps the
        // foreground sleep itself (and exits, racing kill_tree's last kill);
        // the background sleep is a child it does not wait for.
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 1000 & sleep 1000; exit 3"])
            .spawn()
            .unwrap();
        let mut procs = Procs(child, Vec::new());
        let root = procs.0.id();
        for _ in 0..1000 {
            procs.1 = descendants(root);
            if procs.1.len() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(procs.1.len(), 2, "sh did not start both sleeps: {:?}", procs.1);

        kill_tree(root);
        let status = procs.0.wait().unwrap();
        assert!(!status.success(), "sh outlived kill_tree: {status}");
        // Both sleeps were reaped by sh before it went (or, if sh was too
        // slow, are at worst zombies handed to init): none runs.
        for p in &procs.1 {
            assert!(
                stat(*p).is_none_or(|(state, _)| state == 'Z'),
                "sleep {p} outlived kill_tree"
            );
        }
    }

    #[test]
    fn reads_state_and_parent_from_stat() {
        let me = std::process::id();
        let (state, ppid) = stat(me).unwrap();
        assert_ne!(state, 'Z');
        assert_eq!(ppid, std::os::unix::process::parent_id());
        assert!(stat(u32::MAX / 2).is_none());
    }
}
