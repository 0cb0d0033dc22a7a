//! [`CriService`] and the trait implementations: each call runs its module's
//! function (blocking ones on tokio's blocking pool) and maps its error once.

use std::pin::Pin;
use std::sync::Arc;

use berth_api::Namespace;
use berth_image::Images;
use berth_runtime::Runtime;
use futures_util::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::error::CriError;
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
        }
    }

    /// Ends the streams of GetContainerEvents.
    pub fn close(&self) {
        self.closing.send_replace(true);
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

fn unimplemented(call: &str) -> Status {
    Status::from(CriError::Unimplemented(format!(
        "{call} needs berth's streaming server, which this daemon does not serve yet"
    )))
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
        run_pod_sandbox(v1::RunPodSandboxRequest) -> v1::RunPodSandboxResponse;
        stop_pod_sandbox(v1::StopPodSandboxRequest) -> v1::StopPodSandboxResponse;
        remove_pod_sandbox(v1::RemovePodSandboxRequest) -> v1::RemovePodSandboxResponse;
        pod_sandbox_status(v1::PodSandboxStatusRequest) -> v1::PodSandboxStatusResponse;
        list_pod_sandbox(v1::ListPodSandboxRequest) -> v1::ListPodSandboxResponse;
        create_container(v1::CreateContainerRequest) -> v1::CreateContainerResponse;
        start_container(v1::StartContainerRequest) -> v1::StartContainerResponse;
        stop_container(v1::StopContainerRequest) -> v1::StopContainerResponse;
        remove_container(v1::RemoveContainerRequest) -> v1::RemoveContainerResponse;
        list_containers(v1::ListContainersRequest) -> v1::ListContainersResponse;
        container_status(v1::ContainerStatusRequest) -> v1::ContainerStatusResponse;
        update_container_resources(v1::UpdateContainerResourcesRequest) -> v1::UpdateContainerResourcesResponse;
        reopen_container_log(v1::ReopenContainerLogRequest) -> v1::ReopenContainerLogResponse;
        exec_sync(v1::ExecSyncRequest) -> v1::ExecSyncResponse;
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

    async fn exec(&self, _: Request<v1::ExecRequest>) -> Result<Response<v1::ExecResponse>, Status> {
        Err(unimplemented("Exec"))
    }

    async fn attach(&self, _: Request<v1::AttachRequest>) -> Result<Response<v1::AttachResponse>, Status> {
        Err(unimplemented("Attach"))
    }

    async fn port_forward(
        &self,
        _: Request<v1::PortForwardRequest>,
    ) -> Result<Response<v1::PortForwardResponse>, Status> {
        Err(unimplemented("PortForward"))
    }

    async fn checkpoint_container(
        &self,
        r: Request<v1::CheckpointContainerRequest>,
    ) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        Err(Status::from(CriError::Unimplemented(format!(
            "CheckpointContainer of {}: berth does not checkpoint containers yet",
            r.get_ref().container_id
        ))))
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
