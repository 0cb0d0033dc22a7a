//! [`CriService`] and the trait implementations: each call runs its module's
//! function (blocking ones on tokio's blocking pool) and maps its error once.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use berth_api::Namespace;
use berth_image::Images;
use berth_runtime::Runtime;
use futures_util::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::error::CriError;
use crate::stream::{Backend, BackendError, BoxFuture, StreamIo, StreamServer};
use crate::v1;
use crate::v1::image_service_server::ImageService;
use crate::v1::runtime_service_server::RuntimeService;

/// Whether pods can get interfaces: `Err` explains why not (no CNI
/// network configured, say).
pub type NetworkStatus = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The CRI server's state: everything lives in the runtime's store, so this
/// is cheap to clone.
#[derive(Clone)]
pub struct CriService {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) images: Arc<Images>,
    /// Registry settings for pulls that bring their own credentials.
    pub(crate) registry: berth_registry::ClientConfig,
    pub(crate) network: NetworkStatus,
    pub(crate) events: broadcast::Sender<v1::ContainerEventResponse>,
    /// Set when the server shuts down: event streams end then, else their
    /// open connections would hold a graceful shutdown forever.
    pub(crate) closing: Arc<tokio::sync::watch::Sender<bool>>,
    pub(crate) ns: Namespace,
    /// The streaming server that Exec, Attach and PortForward hand URLs of,
    /// once [`CriService::serve_streams`] started it.
    pub(crate) streams: Arc<OnceLock<StreamServer>>,
    /// The last CPU sample of each container and pod, for nanocores.
    pub(crate) cpu_samples: Arc<std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>>,
    /// Pods and containers created after their caller's deadline.
    pub(crate) late: Arc<crate::deadline::Late>,
}

impl CriService {
    pub fn new(
        runtime: Arc<Runtime>,
        images: Arc<Images>,
        registry: berth_registry::ClientConfig,
        network: NetworkStatus,
    ) -> CriService {
        let (events, _) = broadcast::channel(1024);
        CriService {
            runtime,
            images,
            registry,
            network,
            events,
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            ns: crate::NAMESPACE.parse().expect("k8s.io is a valid namespace"),
            streams: Arc::new(OnceLock::new()),
            cpu_samples: Arc::default(),
            late: Arc::default(),
        }
    }

    /// Ends the streams of GetContainerEvents and the streaming server.
    pub fn close(&self) {
        self.closing.send_replace(true);
        if let Some(s) = self.streams.get() {
            s.shutdown();
        }
    }

    /// Starts the streaming server on `addr` (a loopback address; port 0
    /// picks one) and returns where it listens.
    pub async fn serve_streams(&self, addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> {
        let backend: Arc<dyn Backend> = Arc::new(Streams(self.clone()));
        let server = StreamServer::bind(addr, backend).await?;
        let local = server.local_addr();
        if self.streams.set(server).is_err() {
            return Err(std::io::Error::other("the streaming server is already running"));
        }
        Ok(local)
    }

    pub(crate) fn streams(&self) -> Result<&StreamServer, CriError> {
        self.streams.get().ok_or_else(|| {
            CriError::Unimplemented("this server was started without its streaming server".into())
        })
    }

    /// Runs `f` on the blocking pool: the runtime forks, waits and does
    /// file I/O.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CriService) -> Result<T, CriError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let svc = self.clone();
        match tokio::task::spawn_blocking(move || f(&svc)).await {
            Ok(r) => r.map(Response::new).map_err(Status::from),
            Err(e) => Err(Status::internal(format!(
                "CRI call panicked or was cancelled: {e}"
            ))),
        }
    }
}

/// What the streaming server runs: each call's module serves its part.
struct Streams(CriService);

impl Backend for Streams {
    fn exec(&self, req: v1::ExecRequest, io: StreamIo) -> BoxFuture<Result<i32, BackendError>> {
        Box::pin(crate::runtime::exec::run(self.0.clone(), req, io))
    }

    fn attach(&self, req: v1::AttachRequest, io: StreamIo) -> BoxFuture<Result<(), BackendError>> {
        Box::pin(crate::runtime::attach::run(self.0.clone(), req, io))
    }

    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<Result<tokio::net::TcpStream, BackendError>> {
        Box::pin(crate::runtime::port_forward::connect(
            self.0.clone(),
            pod_sandbox_id,
            port,
        ))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::ContainerEventResponse, Status>> + Send>>;

/// Implements `$service` for [`CriService`]: each listed call runs its
/// module's blocking function; `$extra` items are the calls that do not.
macro_rules! service_impl {
    ($service:ident { $($name:ident($req:ty) -> $resp:ty;)* } $($extra:item)*) => {
        #[tonic::async_trait]
        impl $service for CriService {
            $(
                async fn $name(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let req = request.into_inner();
                    self.blocking(move |s| s.$name(req)).await
                }
            )*
            $($extra)*
        }
    };
}

service_impl! {
    RuntimeService {
        version(v1::VersionRequest) -> v1::VersionResponse;
        stop_pod_sandbox(v1::StopPodSandboxRequest) -> v1::StopPodSandboxResponse;
        remove_pod_sandbox(v1::RemovePodSandboxRequest) -> v1::RemovePodSandboxResponse;
        pod_sandbox_status(v1::PodSandboxStatusRequest) -> v1::PodSandboxStatusResponse;
        list_pod_sandbox(v1::ListPodSandboxRequest) -> v1::ListPodSandboxResponse;
        start_container(v1::StartContainerRequest) -> v1::StartContainerResponse;
        stop_container(v1::StopContainerRequest) -> v1::StopContainerResponse;
        remove_container(v1::RemoveContainerRequest) -> v1::RemoveContainerResponse;
        list_containers(v1::ListContainersRequest) -> v1::ListContainersResponse;
        container_status(v1::ContainerStatusRequest) -> v1::ContainerStatusResponse;
        update_container_resources(v1::UpdateContainerResourcesRequest) -> v1::UpdateContainerResourcesResponse;
        reopen_container_log(v1::ReopenContainerLogRequest) -> v1::ReopenContainerLogResponse;
        checkpoint_container(v1::CheckpointContainerRequest) -> v1::CheckpointContainerResponse;
        exec_sync(v1::ExecSyncRequest) -> v1::ExecSyncResponse;
        exec(v1::ExecRequest) -> v1::ExecResponse;
        attach(v1::AttachRequest) -> v1::AttachResponse;
        port_forward(v1::PortForwardRequest) -> v1::PortForwardResponse;
        container_stats(v1::ContainerStatsRequest) -> v1::ContainerStatsResponse;
        list_container_stats(v1::ListContainerStatsRequest) -> v1::ListContainerStatsResponse;
        pod_sandbox_stats(v1::PodSandboxStatsRequest) -> v1::PodSandboxStatsResponse;
        list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest) -> v1::ListPodSandboxStatsResponse;
        update_runtime_config(v1::UpdateRuntimeConfigRequest) -> v1::UpdateRuntimeConfigResponse;
        status(v1::StatusRequest) -> v1::StatusResponse;
        list_metric_descriptors(v1::ListMetricDescriptorsRequest) -> v1::ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest) -> v1::ListPodSandboxMetricsResponse;
        runtime_config(v1::RuntimeConfigRequest) -> v1::RuntimeConfigResponse;
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<v1::RunPodSandboxRequest>,
    ) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        let deadline = crate::deadline::of(&request);
        let req = request.into_inner();
        self.blocking(move |s| s.run_pod_sandbox(req, deadline)).await
    }

    async fn create_container(
        &self,
        request: Request<v1::CreateContainerRequest>,
    ) -> Result<Response<v1::CreateContainerResponse>, Status> {
        let deadline = crate::deadline::of(&request);
        let req = request.into_inner();
        self.blocking(move |s| s.create_container(req, deadline)).await
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _: Request<v1::GetEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        Ok(Response::new(self.event_stream()))
    }
}

service_impl! {
    ImageService {
        list_images(v1::ListImagesRequest) -> v1::ListImagesResponse;
        image_status(v1::ImageStatusRequest) -> v1::ImageStatusResponse;
        remove_image(v1::RemoveImageRequest) -> v1::RemoveImageResponse;
        image_fs_info(v1::ImageFsInfoRequest) -> v1::ImageFsInfoResponse;
    }

    async fn pull_image(
        &self,
        request: Request<v1::PullImageRequest>,
    ) -> Result<Response<v1::PullImageResponse>, Status> {
        self.pull_image(request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
