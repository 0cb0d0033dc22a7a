//! Container stop: the stop signal, then SIGKILL once the grace period is over.
//!
//! The kernel discards a signal sent from outside to a PID namespace's init
//! when that init neither catches nor ignores it: a container stopped right
//! after it started, before its PID 1 installed a SIGTERM handler, would
//! lose the stop signal and sit out the whole grace period. So when the
//! target is such an init and the signal was not caught, the stop watches
//! the init's caught-signal mask and sends the signal again as soon as a
//! handler appears, within the grace period.

use std::time::Duration;

use super::{ContainerState, Runtime, RuntimeError, wait_for};

/// How long a SIGKILLed container may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Runtime {
    /// Stops a container; stopping one that is not running is success.
    /// Waits for a start of the same container that is under way, so the
    /// stop always wins and ends with the process gone.
    pub fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let _lock = self.lock_container(id)?;
        self.stop_locked(id, timeout)
    }

    /// [`Runtime::stop_container`] for a caller that holds the container's lock.
    pub(super) fn stop_locked(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let rec = self.get_container(id)?;
        let status = self.container_status(&rec)?;
        if !matches!(status.state, ContainerState::Running | ContainerState::Created) {
            return Ok(());
        }
        // Created from a checkpoint and not started: nothing runs yet.
        if rec.monitor_pid.is_none() && rec.restore_images.is_some() {
            return Ok(());
        }
        let handler = self.handler(&rec.handler)?;
        let exit_file = self.exit_file(&rec.id);
        let exited = || exit_file.exists().then_some(());
        // In a pod-wide PID namespace the container's init is not the
        // namespace's init: its children survive it unless killed too.
        let all = self.get_pod(&rec.pod_id).is_ok_and(|p| p.init_pid.is_some());
        if !timeout.is_zero() && status.state == ContainerState::Running {
            let signal = rec
                .config
                .stop_signal
                .clone()
                .or_else(|| rec.image_run.stop_signal.clone())
                .unwrap_or_else(|| "TERM".into());
            // Read before sending. A handler installed between this read
            // and the kill gets the signal and, once seen below, a second
            // one: a window of the kill's own duration, accepted because
            // the other choice (reading again after the kill) would lose
            // the signal altogether when the handler comes just after it.
            let mut dropped = match (rec.pid, signal_number(&signal)) {
                (Some(pid), Some(signo)) => InitSignals::read(pid)
                    .filter(|s| s.drops(signo))
                    .map(|_| (pid, signo)),
                _ => None,
            };
            if let Err(e) = handler.kill(&rec.id, &signal, false) {
                tracing::debug!(container = %rec.id, "stop signal: {e}");
            }
            let done = wait_for(timeout, || {
                if exited().is_some() {
                    return Some(());
                }
                if let Some((pid, signo)) = dropped
                    && InitSignals::read(pid).is_some_and(|s| s.catches(signo))
                {
                    tracing::debug!(container = %rec.id, %signal, "the init caught up with its handler: signal again");
                    dropped = None;
                    if let Err(e) = handler.kill(&rec.id, &signal, false) {
                        tracing::debug!(container = %rec.id, "stop signal again: {e}");
                    }
                }
                None
            });
            if done.is_some() {
                return Ok(());
            }
        }
        if let Err(e) = handler.kill(&rec.id, "KILL", all) {
            tracing::debug!(container = %rec.id, "SIGKILL: {e}");
        }
        wait_for(KILL_WAIT, exited).ok_or(RuntimeError::StopTimeout {
            id: rec.id.clone(),
            timeout: KILL_WAIT,
        })?;
        tracing::info!(container = %rec.id, "container stopped");
        Ok(())
    }
}

/// What /proc/PID/status says about a process's signals.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InitSignals {
    /// PID 1 of its own PID namespace (last NSpid field).
    ns_init: bool,
    caught: u64,
    ignored: u64,
}

impl InitSignals {
    fn read(pid: u32) -> Option<InitSignals> {
        InitSignals::parse(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
    }

    pub(crate) fn parse(status: &str) -> Option<InitSignals> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let mask = |name: &str| field(name).and_then(|v| u64::from_str_radix(v, 16).ok());
        Some(InitSignals {
            ns_init: field("NSpid")?.split_whitespace().last()? == "1",
            caught: mask("SigCgt")?,
            ignored: mask("SigIgn")?,
        })
    }

    fn bit(signo: i32) -> u64 {
        1u64 << (signo - 1)
    }

    fn catches(&self, signo: i32) -> bool {
        self.caught & Self::bit(signo) != 0
    }

    /// The kernel discards `signo` sent to this process from outside its
    /// namespace: a namespace init with the default action. (An ignored
    /// signal is discarded too, but no handler will come for it.)
    fn drops(&self, signo: i32) -> bool {
        self.ns_init
            && signo != libc::SIGKILL
            && signo != libc::SIGSTOP
            && (self.caught | self.ignored) & Self::bit(signo) == 0
    }
}

/// The number of a signal given as a name (`TERM`, `SIGTERM`,
/// `SIGRTMIN+3`) or a number, as the runtimes accept it.
pub(crate) fn signal_number(signal: &str) -> Option<i32> {
    if let Ok(n) = signal.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = match rest {
            "" => 0,
            r => r.strip_prefix('+')?.parse().ok()?,
        };
        let n = libc::SIGRTMIN() + off;
        return (n <= libc::SIGRTMAX()).then_some(n);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 = match rest {
            "" => 0,
            r => r.strip_prefix('-')?.parse().ok()?,
        };
        let n = libc::SIGRTMAX() - off;
        return (n >= libc::SIGRTMIN()).then_some(n);
    }
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    };
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGRTMIN+2"), Some(libc::SIGRTMIN() + 2));
        assert_eq!(signal_number("RTMAX-1"), Some(libc::SIGRTMAX() - 1));
        assert_eq!(signal_number("NOPE"), None);
        assert_eq!(signal_number("0"), None);
    }

    #[test]
    fn an_init_without_a_handler_drops_the_signal_until_it_catches_it() {
        let status = |nspid: &str, cgt: &str, ign: &str| {
            format!("Name:\tsh\nNSpid:\t{nspid}\nSigIgn:\t{ign}\nSigCgt:\t{cgt}\n")
        };
        let fresh = InitSignals::parse(&status("4242\t1", "0000000000000000", "0000000000000000")).unwrap();
        assert!(fresh.drops(libc::SIGTERM));
        assert!(!fresh.drops(libc::SIGKILL));
        // SIGTERM is bit 14 (0x4000).
        let ready = InitSignals::parse(&status("4242\t1", "0000000000004000", "0000000000000000")).unwrap();
        assert!(ready.catches(libc::SIGTERM) && !ready.drops(libc::SIGTERM));
        let ignoring = InitSignals::parse(&status("4242\t1", "0", "0000000000004000")).unwrap();
        assert!(!ignoring.drops(libc::SIGTERM));
        // Not a namespace's init: the default action applies.
        let child = InitSignals::parse(&status("4242\t7", "0", "0")).unwrap();
        assert!(!child.drops(libc::SIGTERM));
        assert_eq!(InitSignals::parse("Name:\tsh\n"), None);
    }
}
