//! berth's CRI v1 server: [`CriService`] implements the generated
//! `RuntimeService` and `ImageService` traits over berth's runtime and image
//! store. One module per CRI call (`runtime/run_pod_sandbox.rs`,
//! `image/pull_image.rs`…); every error reaches gRPC through
//! [`error::CriError`]'s one mapping to `tonic::Status`.

mod authority;
mod convert;
mod deadline;
pub mod error;
mod events;
mod image;
mod names;
mod pty;
mod runtime;
mod service;
pub mod stream;

pub use error::CriError;
pub use image::resolve::resolve as resolve_image;
pub use k8s_cri::v1;
pub use service::{CriService, NetworkStatus};

/// The berth namespace every CRI object lives in.
pub const NAMESPACE: &str = "k8s.io";

/// Both services, ready for a tonic `Server`.
pub fn servers(
    svc: CriService,
) -> (
    v1::runtime_service_server::RuntimeServiceServer<CriService>,
    v1::image_service_server::ImageServiceServer<CriService>,
) {
    (
        v1::runtime_service_server::RuntimeServiceServer::new(svc.clone()),
        v1::image_service_server::ImageServiceServer::new(svc),
    )
}

/// Serves both services on `listener` until `shutdown` completes, then
/// lets the calls in flight finish.
pub async fn serve(
    svc: CriService,
    listener: tokio::net::UnixListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let closer = svc.clone();
    let shutdown = async move {
        shutdown.await;
        closer.close();
    };
    let (runtime, image) = servers(svc);
    tonic::transport::Server::builder()
        .add_service(runtime)
        .add_service(image)
        .serve_with_incoming_shutdown(
            futures_util::TryStreamExt::map_ok(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                authority::FixAuthority::new,
            ),
            shutdown,
        )
        .await
}
