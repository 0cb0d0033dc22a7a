//! Exec: a new process in a running container, with the container's own
//! process settings (user, capabilities, environment) unless overridden.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ContainerState, Runtime, RuntimeError, new_id, write_file};

#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub tty: bool,
    /// Extra `KEY=VALUE` entries, overriding the container's.
    pub env: Vec<String>,
    pub cwd: Option<String>,
}

/// A prepared exec: run `command` (set its stdio first); the process file
/// it reads is removed when this is dropped.
pub struct ExecCommand {
    pub command: Command,
    /// With a console socket the runtime detaches and writes the process'
    /// pid here; the caller, a child subreaper, waits for it.
    pub pid_file: Option<PathBuf>,
    process_file: PathBuf,
}

impl Drop for ExecCommand {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.process_file);
        if let Some(p) = &self.pid_file {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Runtime {
    /// Prepares `handler exec` of `req` in container `id`. With a tty and
    /// `console_socket`, the pty's master is sent there and the runtime
    /// detaches (runc allows a console socket only then): see
    /// [`ExecCommand::pid_file`].
    pub fn exec_command(
        &self,
        id: &str,
        req: &ExecRequest,
        console_socket: Option<&Path>,
    ) -> Result<ExecCommand, RuntimeError> {
        let rec = self.get_container(id)?;
        if self.container_status(&rec)?.state != ContainerState::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {} ({}) is not running",
                rec.config.name, rec.id
            )));
        }
        if req.args.is_empty() {
            return Err(RuntimeError::InvalidArgument("exec: no command given".into()));
        }
        let dir = self.ctr_state_dir(&rec.id);
        let config = dir.join("config.json");
        let bytes = std::fs::read(&config).map_err(RuntimeError::io("read", &config))?;
        let spec: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            RuntimeError::FailedPrecondition(format!("container {}: {}: {e}", rec.id, config.display()))
        })?;
        let mut process = spec.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(req.args);
        process["terminal"] = serde_json::json!(req.tty);
        if let Some(cwd) = &req.cwd {
            process["cwd"] = serde_json::json!(cwd);
        }
        if !req.env.is_empty() {
            let mut env: Vec<String> = process["env"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default();
            for kv in &req.env {
                let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
                env.push(kv.clone());
            }
            process["env"] = serde_json::json!(env);
        }
        if let Some(o) = process.as_object_mut() {
            // A console size is a property of the caller's terminal.
            o.remove("consoleSize");
        }
        let tag = &new_id()[..16];
        let process_file = dir.join(format!("exec-{tag}.json"));
        write_file(&process_file, &serde_json::to_vec(&process).expect("json"))?;
        let handler = self.handler(&rec.handler)?;
        let pid_file = console_socket.map(|_| dir.join(format!("exec-{tag}.pid")));
        let mut extra: Vec<&OsStr> = Vec::new();
        if req.tty {
            extra.push(OsStr::new("--tty"));
        }
        if let (Some(s), Some(p)) = (console_socket, &pid_file) {
            extra.extend([
                OsStr::new("--console-socket"),
                s.as_os_str(),
                OsStr::new("--detach"),
            ]);
            extra.extend([OsStr::new("--pid-file"), p.as_os_str()]);
        }
        let command = handler.exec_command(&rec.id, &process_file, &extra);
        Ok(ExecCommand {
            command,
            pid_file,
            process_file,
        })
    }
}

impl Runtime {
    /// Wraps a detached tty exec (one prepared with a console socket) in
    /// the monitor's `--exec-wait` mode, which waits for the process the
    /// runtime leaves behind: see [`crate::monitor::exec_wait`]. Its stdout
    /// reports `exit CODE` or `error MESSAGE`.
    pub fn exec_waiter(&self, exec: &ExecCommand) -> Result<Command, RuntimeError> {
        let pid_file = exec.pid_file.as_ref().ok_or_else(|| {
            RuntimeError::InvalidArgument(
                "exec waiter: the exec was prepared without a console socket".into(),
            )
        })?;
        let (exe, args) = &self.opts.monitor;
        let mut c = Command::new(exe);
        c.args(args)
            .arg("--exec-wait")
            .arg(pid_file)
            .arg("--")
            .arg(exec.command.get_program())
            .args(exec.command.get_args());
        for (k, v) in exec.command.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = exec.command.get_current_dir() {
            c.current_dir(dir);
        }
        Ok(c)
    }
}
