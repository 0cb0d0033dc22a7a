//! The measured scenarios. Each sample times only the CRI calls (Instant
//! around them); setup such as log directories and all cleanup that a
//! scenario does not measure happen outside the timed span.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_cri::v1;

use crate::cri::Endpoint;
use crate::spec::{make_log_dir, pod_config, pod_name, sleep_container};
use crate::stats::{Sample, percentile};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// RunPodSandbox → StopPodSandbox → RemovePodSandbox.
    Pod,
    /// CreateContainer → StartContainer → StopContainer → RemoveContainer in
    /// one pod kept for the whole run.
    Container,
    /// RunPodSandbox → CreateContainer → StartContainer: a pod from nothing
    /// to a running app.
    Scratch,
    /// PullImage of an image the runtime holds no content of.
    Pull,
    /// `pods` × (RunPodSandbox → CreateContainer → StartContainer), all at once.
    Density { pods: usize },
}

/// What every sample of one invocation shares.
pub struct Ctx {
    /// Unique per invocation: in pod names and the run label.
    pub run_id: String,
    /// The app image of the pod and container scenarios.
    pub image: String,
    /// The image the pull scenario pulls.
    pub pull_image: String,
    /// Log directories of the pods go below (one subdirectory per endpoint).
    pub log_root: PathBuf,
}

/// Per-endpoint state a scenario keeps across its samples.
#[derive(Default)]
pub struct Prepared {
    /// The container scenario's pod: id and config.
    holder: Option<(String, v1::PodSandboxConfig)>,
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Pod => "pod",
            Scenario::Container => "container",
            Scenario::Scratch => "scratch",
            Scenario::Pull => "pull",
            Scenario::Density { .. } => "density",
        }
    }

    pub fn title(&self, ctx: &Ctx) -> String {
        match self {
            Scenario::Pod => "pod lifecycle: RunPodSandbox → StopPodSandbox → RemovePodSandbox".into(),
            Scenario::Container => format!(
                "container lifecycle in one pod: CreateContainer → StartContainer → StopContainer (timeout 0) → RemoveContainer, {} sleep",
                ctx.image
            ),
            Scenario::Scratch => format!(
                "pod + container from scratch to running: RunPodSandbox → CreateContainer → StartContainer, {} sleep",
                ctx.image
            ),
            Scenario::Pull => format!(
                "PullImage {} (RemoveImage and the content removed before each)",
                ctx.pull_image
            ),
            Scenario::Density { pods } => format!(
                "{pods} × (RunPodSandbox → CreateContainer → StartContainer) concurrently, {} sleep; per-pod p50/p99, wall time",
                ctx.image
            ),
        }
    }

    /// Untimed setup on one endpoint: the app image present (or, for pull,
    /// the pulled image absent), the container scenario's pod running.
    pub async fn prepare(&self, ep: &Endpoint, ctx: &Ctx) -> anyhow::Result<Prepared> {
        let mut p = Prepared::default();
        if *self == Scenario::Pull {
            if ep.image_present(&ctx.pull_image).await? {
                ep.remove_image(&ctx.pull_image).await?;
            }
            return Ok(p);
        }
        ep.pull(&ctx.image).await?;
        if *self == Scenario::Container {
            let cfg = pod_config(
                &pod_name(&ctx.run_id, "holder", 0, 0),
                &ctx.run_id,
                &log_root(ctx, ep),
            );
            make_log_dir(&cfg)?;
            let id = ep.run_pod(&cfg).await?;
            p.holder = Some((id, cfg));
        }
        Ok(p)
    }

    /// One timed sample; `seq` numbers the samples of this endpoint
    /// (warm-ups included) so names never repeat.
    pub async fn sample(&self, ep: &Endpoint, ctx: &Ctx, p: &Prepared, seq: usize) -> anyhow::Result<Sample> {
        match self {
            Scenario::Pod => pod_lifecycle(ep, ctx, seq).await,
            Scenario::Container => {
                let (pod, cfg) = p.holder.as_ref().context("container scenario without its pod")?;
                container_lifecycle(ep, ctx, pod, cfg, seq).await
            }
            Scenario::Scratch => {
                let cfg = pod_config(
                    &pod_name(&ctx.run_id, "scratch", seq, 0),
                    &ctx.run_id,
                    &log_root(ctx, ep),
                );
                make_log_dir(&cfg)?;
                let started = start_pod_with_app(ep, &cfg, &ctx.image).await?;
                ep.stop_pod(&started.pod).await?;
                ep.remove_pod(&started.pod).await?;
                let mut s = Sample::default();
                s.push("total", started.total);
                s.push("run_pod", started.run_pod);
                s.push("create", started.create);
                s.push("start", started.start);
                Ok(s)
            }
            Scenario::Pull => {
                let t = Instant::now();
                ep.pull(&ctx.pull_image).await?;
                let pull = t.elapsed();
                ep.remove_image(&ctx.pull_image).await?;
                let mut s = Sample::default();
                s.push("pull", pull);
                Ok(s)
            }
            Scenario::Density { pods } => density(ep, ctx, *pods, seq).await,
        }
    }

    /// Untimed teardown of what `prepare` made.
    pub async fn finish(&self, ep: &Endpoint, p: Prepared) -> anyhow::Result<()> {
        if let Some((id, _)) = p.holder {
            ep.stop_pod(&id).await?;
            ep.remove_pod(&id).await?;
        }
        Ok(())
    }
}

/// Each endpoint logs below a directory of its own.
fn log_root(ctx: &Ctx, ep: &Endpoint) -> PathBuf {
    ctx.log_root.join(&ep.name)
}

async fn pod_lifecycle(ep: &Endpoint, ctx: &Ctx, seq: usize) -> anyhow::Result<Sample> {
    let cfg = pod_config(
        &pod_name(&ctx.run_id, "pod", seq, 0),
        &ctx.run_id,
        &log_root(ctx, ep),
    );
    make_log_dir(&cfg)?;
    let t0 = Instant::now();
    let id = ep.run_pod(&cfg).await?;
    let t1 = Instant::now();
    ep.stop_pod(&id).await?;
    let t2 = Instant::now();
    ep.remove_pod(&id).await?;
    let t3 = Instant::now();
    let mut s = Sample::default();
    s.push("total", t3 - t0);
    s.push("run", t1 - t0);
    s.push("stop", t2 - t1);
    s.push("remove", t3 - t2);
    Ok(s)
}

async fn container_lifecycle(
    ep: &Endpoint,
    ctx: &Ctx,
    pod: &str,
    pod_cfg: &v1::PodSandboxConfig,
    seq: usize,
) -> anyhow::Result<Sample> {
    let cfg = sleep_container(&ctx.image, u32::try_from(seq).context("sample number")?);
    let t0 = Instant::now();
    let id = ep.create_container(pod, &cfg, pod_cfg).await?;
    let t1 = Instant::now();
    ep.start_container(&id).await?;
    let t2 = Instant::now();
    ep.stop_container(&id).await?;
    let t3 = Instant::now();
    ep.remove_container(&id).await?;
    let t4 = Instant::now();
    let mut s = Sample::default();
    s.push("total", t4 - t0);
    s.push("create", t1 - t0);
    s.push("start", t2 - t1);
    s.push("stop", t3 - t2);
    s.push("remove", t4 - t3);
    Ok(s)
}

pub struct Started {
    pub pod: String,
    pub total: Duration,
    pub run_pod: Duration,
    pub create: Duration,
    pub start: Duration,
}

/// RunPodSandbox → CreateContainer → StartContainer, timed call by call.
pub async fn start_pod_with_app(
    ep: &Endpoint,
    cfg: &v1::PodSandboxConfig,
    image: &str,
) -> anyhow::Result<Started> {
    let t0 = Instant::now();
    let pod = ep.run_pod(cfg).await?;
    let t1 = Instant::now();
    let ctr = ep.create_container(&pod, &sleep_container(image, 0), cfg).await?;
    let t2 = Instant::now();
    ep.start_container(&ctr).await?;
    let t3 = Instant::now();
    Ok(Started {
        pod,
        total: t3 - t0,
        run_pod: t1 - t0,
        create: t2 - t1,
        start: t3 - t2,
    })
}

/// Starts `n` pods with an app each, all at once; every pod is timed from
/// the common start. The pods are removed afterwards (timed as "teardown",
/// all at once as well), also when some failed to start.
async fn density(ep: &Endpoint, ctx: &Ctx, n: usize, seq: usize) -> anyhow::Result<Sample> {
    anyhow::ensure!(n > 0, "density needs at least one pod");
    let root = log_root(ctx, ep);
    let configs: Vec<_> = (0..n)
        .map(|i| pod_config(&pod_name(&ctx.run_id, "density", seq, i), &ctx.run_id, &root))
        .collect();
    for c in &configs {
        make_log_dir(c)?;
    }
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for cfg in configs {
        let ep = ep.clone();
        let image = ctx.image.clone();
        tasks.spawn(async move {
            let s = start_pod_with_app(&ep, &cfg, &image).await?;
            anyhow::Ok((s.pod, t0.elapsed()))
        });
    }
    let mut latencies = Vec::with_capacity(n);
    let mut pods = Vec::with_capacity(n);
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        match r.context("density task").and_then(|r| r) {
            Ok((pod, t)) => {
                pods.push(pod);
                latencies.push(crate::stats::ms(t));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let wall = t0.elapsed();

    let t1 = Instant::now();
    // Pods whose start failed half-way are not in `pods`: they carry the
    // run label, which the final cleanup removes by.
    let removed = ep.remove_pods_labelled(crate::cri::RUN_LABEL, &ctx.run_id).await;
    let teardown = t1.elapsed();
    if let Some(e) = first_err {
        return Err(e.context(format!(
            "{}: density: {} of {n} pods started",
            ep.name,
            pods.len()
        )));
    }
    removed?;
    let mut s = Sample::default();
    s.push("wall", wall);
    s.0.push(("p50", percentile(&latencies, 50.0).unwrap_or_default()));
    s.0.push(("p99", percentile(&latencies, 99.0).unwrap_or_default()));
    s.push("teardown", teardown);
    Ok(s)
}
