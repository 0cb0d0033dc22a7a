//! The exit record a monitor leaves behind when the container's init exits.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MonitorError;

/// How the container's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code; 128+signal when killed by a signal.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// RFC3339Nano, UTC.
    pub exited_at: String,
    /// The cgroup's `oom_kill` counter was non-zero at exit.
    pub oom_killed: bool,
}

impl ExitRecord {
    /// Builds the record from a `waitpid` status.
    pub fn from_wait_status(status: i32, exited_at: String, oom_killed: bool) -> Self {
        let (code, signal) = if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            (128 + sig, Some(sig))
        } else {
            (libc::WEXITSTATUS(status), None)
        };
        ExitRecord {
            code,
            signal,
            exited_at,
            oom_killed,
        }
    }
}

/// Reads an exit record; `Ok(None)` while the container has not exited.
pub fn read_exit(path: &Path) -> Result<Option<ExitRecord>, MonitorError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MonitorError::ExitRecord {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|source| MonitorError::ExitRecordFormat {
            path: path.to_owned(),
            source,
        })
}

/// Writes through a temporary file and a rename, so readers see either
/// nothing or the whole file.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// True when any of the cgroup files reports `oom_kill N` with N > 0. Files
/// that are missing or unreadable count as no OOM kill: the record must be
/// written regardless.
pub(crate) fn oom_killed(files: &[PathBuf]) -> bool {
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_status_maps_to_128_plus_signal() {
        // A wait status for "killed by signal 9" is the signal number itself.
        let r = ExitRecord::from_wait_status(9, String::new(), false);
        assert_eq!((r.code, r.signal), (137, Some(9)));
        let r = ExitRecord::from_wait_status(3 << 8, String::new(), false);
        assert_eq!((r.code, r.signal), (3, None));
    }

    #[test]
    fn oom_counter_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        assert!(!oom_killed(std::slice::from_ref(&v1)));
        let v2 = dir.path().join("memory.events");
        std::fs::write(&v2, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n").unwrap();
        assert!(oom_killed(&[v1, v2]));
    }
}
