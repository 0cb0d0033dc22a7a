//! PortForward: the CRI call hands out a single-use URL of the streaming
//! server; for each port the client asks for there, [`connect`] opens a TCP
//! connection to that port on the pod's loopback, from inside the pod's
//! network namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;

use berth_runtime::model::NsMode;
use berth_runtime::namespaces::{self, NsKind};
use berth_runtime::runtime::PodState;

use super::exec::blocking;
use crate::error::CriError;
use crate::service::CriService;
use crate::stream::BackendError;
use crate::v1;

impl CriService {
    pub(crate) fn port_forward(
        &self,
        req: v1::PortForwardRequest,
    ) -> Result<v1::PortForwardResponse, CriError> {
        let pod = self.pod(&req.pod_sandbox_id)?;
        if pod.state != PodState::Ready {
            return Err(CriError::FailedPrecondition(format!(
                "port-forward to pod sandbox {}: it is not ready",
                pod.id
            )));
        }
        if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(CriError::InvalidArgument(format!(
                "port-forward to pod sandbox {}: port {p} is out of range",
                pod.id
            )));
        }
        let url = self.streams()?.port_forward_url(v1::PortForwardRequest {
            pod_sandbox_id: pod.id,
            ..req
        });
        Ok(v1::PortForwardResponse { url })
    }
}

/// A connection to `port` on the pod's loopback (IPv4 first, then IPv6,
/// as containerd tries them).
pub(crate) async fn connect(
    svc: CriService,
    pod_id: String,
    port: u16,
) -> Result<tokio::net::TcpStream, BackendError> {
    let runtime = svc.runtime.clone();
    let stream = blocking(move || {
        let pod = runtime.get_pod(&pod_id)?;
        let netns = match (&pod.ns_dir, pod.config.namespaces.network) {
            (_, NsMode::Node) => None,
            (Some(dir), _) => Some(namespaces::path(dir, NsKind::Net)),
            (None, _) => {
                return Err(CriError::FailedPrecondition(format!(
                    "port-forward to pod sandbox {pod_id}: it has no network namespace"
                )));
            }
        };
        connect_in(netns.as_deref(), port).map_err(|e| {
            CriError::FailedPrecondition(format!("port-forward to pod sandbox {pod_id} port {port}: {e}"))
        })
    })
    .await?;
    stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(stream))
        .map_err(|e| BackendError(format!("port-forward: {e}")))
}

/// Connects from inside `netns` (the host's when `None`). A socket keeps
/// the namespace it was created in, so a short-lived thread enters the
/// namespace, connects and hands the socket back: the daemon's own threads
/// never change namespace.
fn connect_in(netns: Option<&Path>, port: u16) -> std::io::Result<TcpStream> {
    let Some(netns) = netns else {
        return loopback(port);
    };
    let ns = std::fs::File::open(netns)?;
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        loopback(port)
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

fn loopback(port: u16) -> std::io::Result<TcpStream> {
    TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .or_else(|_| TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port))))
}
