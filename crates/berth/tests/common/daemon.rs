//! `berth daemon` for tests that speak CRI to it over its socket.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::Berth;

/// A running `berth daemon`, stopped with SIGTERM when dropped.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(b: &Berth) -> Daemon {
        let socket = b.dir.path().join("cri.sock");
        let log = b.dir.path().join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--config")
            .arg(&b.config)
            .args(["--log-level", "info", "daemon", "--socket"])
            .arg(format!("unix://{}", socket.display()))
            .env_remove("BERTH_ROOT")
            .env_remove("BERTH_STATE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn berth daemon");
        let mut d = Daemon { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("daemon exited ({st}): {}", d.log());
            }
            assert!(Instant::now() < deadline, "daemon did not listen: {}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status; the socket must be gone.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let st = self.child.wait().unwrap();
        assert!(!self.socket.exists(), "daemon left its socket");
        st
    }

    pub async fn channel(&self) -> Channel {
        let path = self.socket.clone();
        // kubelet and crictl send `:authority: localhost`; h2 rejects a path.
        Endpoint::try_from("http://localhost")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .expect("connect to daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.stop();
        }
    }
}
