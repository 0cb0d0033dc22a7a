//! One CRI endpoint: the connection, the calls the scenarios make (each
//! bounded by a deadline, so a hung runtime fails the run instead of
//! stalling it), and the removal of the pods a run left behind.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use k8s_cri::v1;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Uri};

/// Label every benchmark pod carries, so `down` finds them on any runtime.
pub const BENCH_LABEL: &str = "berth-bench";
/// Label naming the invocation that made a pod, so a run removes its own.
pub const RUN_LABEL: &str = "berth-bench-run";

#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub socket: PathBuf,
    /// `runtime_name runtime_version` from CRI Version.
    pub runtime: String,
    /// Shell command run after RemoveImage, until the runtime's content is gone.
    pub after_remove: Option<String>,
    pub timeout: Duration,
    rs: RuntimeServiceClient<Channel>,
    is: ImageServiceClient<Channel>,
}

impl Endpoint {
    /// Connects to `unix:///path` (or a bare absolute path); `name` defaults
    /// to the runtime's own name from CRI Version.
    pub async fn connect(name: Option<String>, url: &str, timeout: Duration) -> anyhow::Result<Endpoint> {
        let socket = socket_path(url)?;
        let channel = channel(&socket)
            .await
            .with_context(|| format!("connect to CRI endpoint {url}"))?;
        let mut rs = RuntimeServiceClient::new(channel.clone());
        let is = ImageServiceClient::new(channel);
        let v = deadline(timeout, "Version", rs.version(v1::VersionRequest::default()))
            .await
            .with_context(|| format!("CRI endpoint {url}"))?;
        Ok(Endpoint {
            name: name.unwrap_or_else(|| v.runtime_name.clone()),
            socket,
            runtime: format!("{} {}", v.runtime_name, v.runtime_version),
            after_remove: None,
            timeout,
            rs,
            is,
        })
    }

    pub async fn pull(&self, image: &str) -> anyhow::Result<String> {
        let req = v1::PullImageRequest {
            image: Some(image_spec(image)),
            ..Default::default()
        };
        let r = deadline(self.timeout, "PullImage", self.is.clone().pull_image(req)).await;
        Ok(r.with_context(|| format!("{}: pull {image}", self.name))?
            .image_ref)
    }

    pub async fn image_present(&self, image: &str) -> anyhow::Result<bool> {
        let req = v1::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let r = deadline(self.timeout, "ImageStatus", self.is.clone().image_status(req)).await;
        Ok(
            r.with_context(|| format!("{}: status of image {image}", self.name))?
                .image
                .is_some(),
        )
    }

    /// RemoveImage, then the endpoint's `after_remove` command: a pull
    /// measured afterwards must fetch and unpack everything again.
    pub async fn remove_image(&self, image: &str) -> anyhow::Result<()> {
        let req = v1::RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        deadline(self.timeout, "RemoveImage", self.is.clone().remove_image(req))
            .await
            .with_context(|| format!("{}: remove image {image}", self.name))?;
        if let Some(cmd) = &self.after_remove {
            let st = tokio::process::Command::new("sh")
                .args(["-c", cmd])
                .stdout(std::process::Stdio::null())
                .status()
                .await
                .with_context(|| format!("{}: run after-remove command {cmd:?}", self.name))?;
            anyhow::ensure!(st.success(), "{}: after-remove command {cmd:?}: {st}", self.name);
        }
        anyhow::ensure!(
            !self.image_present(image).await?,
            "{}: image {image} is still listed after RemoveImage",
            self.name
        );
        Ok(())
    }

    pub async fn run_pod(&self, config: &v1::PodSandboxConfig) -> anyhow::Result<String> {
        let req = v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let r = deadline(
            self.timeout,
            "RunPodSandbox",
            self.rs.clone().run_pod_sandbox(req),
        )
        .await;
        let name = &config
            .metadata
            .as_ref()
            .map(|m| m.name.as_str())
            .unwrap_or_default();
        Ok(r.with_context(|| format!("{}: run pod {name}", self.name))?
            .pod_sandbox_id)
    }

    pub async fn stop_pod(&self, id: &str) -> anyhow::Result<()> {
        let req = v1::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        deadline(
            self.timeout,
            "StopPodSandbox",
            self.rs.clone().stop_pod_sandbox(req),
        )
        .await
        .with_context(|| format!("{}: stop pod {id}", self.name))?;
        Ok(())
    }

    pub async fn remove_pod(&self, id: &str) -> anyhow::Result<()> {
        let req = v1::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        deadline(
            self.timeout,
            "RemovePodSandbox",
            self.rs.clone().remove_pod_sandbox(req),
        )
        .await
        .with_context(|| format!("{}: remove pod {id}", self.name))?;
        Ok(())
    }

    pub async fn create_container(
        &self,
        pod: &str,
        config: &v1::ContainerConfig,
        sandbox: &v1::PodSandboxConfig,
    ) -> anyhow::Result<String> {
        let req = v1::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox.clone()),
        };
        let r = deadline(
            self.timeout,
            "CreateContainer",
            self.rs.clone().create_container(req),
        )
        .await;
        Ok(
            r.with_context(|| format!("{}: create container in pod {pod}", self.name))?
                .container_id,
        )
    }

    pub async fn start_container(&self, id: &str) -> anyhow::Result<()> {
        let req = v1::StartContainerRequest {
            container_id: id.to_string(),
        };
        deadline(
            self.timeout,
            "StartContainer",
            self.rs.clone().start_container(req),
        )
        .await
        .with_context(|| format!("{}: start container {id}", self.name))?;
        Ok(())
    }

    /// StopContainer with timeout 0: SIGKILL at once, as the scenarios measure
    /// the runtime, not an app's shutdown.
    pub async fn stop_container(&self, id: &str) -> anyhow::Result<()> {
        let req = v1::StopContainerRequest {
            container_id: id.to_string(),
            timeout: 0,
        };
        deadline(self.timeout, "StopContainer", self.rs.clone().stop_container(req))
            .await
            .with_context(|| format!("{}: stop container {id}", self.name))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> anyhow::Result<()> {
        let req = v1::RemoveContainerRequest {
            container_id: id.to_string(),
        };
        deadline(
            self.timeout,
            "RemoveContainer",
            self.rs.clone().remove_container(req),
        )
        .await
        .with_context(|| format!("{}: remove container {id}", self.name))?;
        Ok(())
    }

    /// Ids of the pods carrying label `key=value`.
    pub async fn pods_labelled(&self, key: &str, value: &str) -> anyhow::Result<Vec<String>> {
        let req = v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: [(key.to_string(), value.to_string())].into(),
                ..Default::default()
            }),
        };
        let r = deadline(
            self.timeout,
            "ListPodSandbox",
            self.rs.clone().list_pod_sandbox(req),
        )
        .await;
        let items = r
            .with_context(|| format!("{}: list pods {key}={value}", self.name))?
            .items;
        Ok(items.into_iter().map(|p| p.id).collect())
    }

    /// Stops and removes every pod labelled `key=value`, concurrently;
    /// returns how many there were.
    pub async fn remove_pods_labelled(&self, key: &str, value: &str) -> anyhow::Result<usize> {
        let ids = self.pods_labelled(key, value).await?;
        let n = ids.len();
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let ep = self.clone();
            tasks.spawn(async move {
                ep.stop_pod(&id).await?;
                ep.remove_pod(&id).await
            });
        }
        let mut first_err = None;
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r.context("pod removal task").and_then(|r| r) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(n), Err)
    }
}

pub fn image_spec(image: &str) -> v1::ImageSpec {
    v1::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

fn socket_path(url: &str) -> anyhow::Result<PathBuf> {
    let path = url.strip_prefix("unix://").unwrap_or(url);
    anyhow::ensure!(
        path.starts_with('/'),
        "endpoint {url:?}: give unix:///absolute/path or an absolute path"
    );
    Ok(PathBuf::from(path))
}

async fn channel(socket: &Path) -> anyhow::Result<Channel> {
    let path = socket.to_path_buf();
    // kubelet and crictl send `:authority: localhost`; h2 rejects a path.
    let ch = tonic::transport::Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await?;
    Ok(ch)
}

/// Awaits one CRI call for at most `limit`.
async fn deadline<T>(
    limit: Duration,
    call: &str,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(anyhow::anyhow!("{call}: {:?}: {}", s.code(), s.message())),
        Err(_) => Err(anyhow::anyhow!("{call}: no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls() {
        assert_eq!(
            socket_path("unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(socket_path("/run/x.sock").unwrap(), PathBuf::from("/run/x.sock"));
        assert!(socket_path("unix://run/x.sock").is_err());
        assert!(socket_path("localhost:1234").is_err());
    }
}
