//! Pods after `berth run`: ps, status, exec, logs, stop, rm, stats.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_runtime::Runtime;
use berth_runtime::runtime::{
    ContainerRecord, ContainerState, ContainerStatus, ExecRequest, PodRecord, PodState,
};
use clap::Args;
use serde::Serialize;

use super::run::MAIN_APP;
use super::{Ctx, terminal};

#[derive(Args)]
pub struct PsArgs {
    /// Also list each app of every pod.
    #[arg(short, long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
    /// Only pod ids.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the process a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The app to run in [default: the main app].
    #[arg(long)]
    pub app: Option<String>,
    /// Environment variable KEY=VALUE.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    pub pod: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Keep printing as the app writes (from where the log ended when
    /// `logs` started, after the lines printed up to there).
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of the log as it was when `logs` started.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Prefix each line with its time.
    #[arg(long)]
    pub timestamps: bool,
    /// The app [default: the only or main app].
    #[arg(long)]
    pub app: Option<String>,
    pub pod: String,
}

/// A pod as `ps` and `status` show it.
#[derive(Serialize)]
pub struct PodView {
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// running, exited, stopped, created.
    pub state: String,
    pub exit_code: Option<i32>,
    pub created: String,
    pub ips: Vec<String>,
    pub apps: Vec<AppView>,
}

#[derive(Serialize)]
pub struct AppView {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: ContainerState,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub log: PathBuf,
}

fn rfc3339(nanos: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

pub fn view(rt: &Runtime, pod: &PodRecord) -> anyhow::Result<PodView> {
    let ctrs = rt.list_containers(None, Some(&pod.id))?;
    let main = pod.config.annotations.get(MAIN_APP);
    let mut apps = Vec::new();
    let mut main_status: Option<ContainerStatus> = None;
    let mut any_running = false;
    for c in &ctrs {
        let st = rt.container_status(c)?;
        any_running |= st.state == ContainerState::Running;
        apps.push(AppView {
            id: c.id.clone(),
            name: c.config.name.clone(),
            image: c.image_name.clone(),
            state: st.state,
            pid: c.pid.filter(|_| st.state == ContainerState::Running),
            exit_code: st.exit.as_ref().map(|e| e.code),
            reason: st.reason.clone(),
            started: c.started_at.map(rfc3339),
            finished: st.exit.as_ref().map(|e| e.exited_at.clone()),
            log: c.log_path.clone(),
        });
        if Some(&c.config.name) == main {
            main_status = Some(st);
        }
    }
    let state = if any_running {
        "running"
    } else if main_status.as_ref().is_some_and(|s| s.exit.is_some()) {
        "exited"
    } else if pod.state == PodState::NotReady {
        "stopped"
    } else {
        "created"
    };
    Ok(PodView {
        id: pod.id.clone(),
        name: pod.config.name.clone(),
        namespace: pod.namespace.clone(),
        state: state.to_string(),
        exit_code: main_status.and_then(|s| s.exit.map(|e| e.code)),
        created: rfc3339(pod.created_at),
        ips: pod.ips.clone(),
        apps,
    })
}

pub fn ps(ctx: &Ctx, a: PsArgs) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let pods = rt.list_pods(Some(&ctx.namespace))?;
    let views = pods
        .iter()
        .map(|p| view(&rt, p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(ExitCode::SUCCESS);
    }
    if a.quiet {
        for v in &views {
            println!("{}", v.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12}  {:<24}  {:<14}  {:<5}  CREATED",
        "POD ID", "NAME", "STATE", "APPS"
    );
    for v in &views {
        let state = match v.exit_code {
            Some(c) if v.state != "running" => format!("{} ({c})", v.state),
            _ => v.state.clone(),
        };
        println!(
            "{:<12}  {:<24}  {:<14}  {:<5}  {}",
            &v.id[..12],
            v.name,
            state,
            v.apps.len(),
            v.created
        );
        if a.all {
            for app in &v.apps {
                let st = match app.exit_code {
                    Some(c) => format!("{:?} ({c})", app.state).to_lowercase(),
                    None => format!("{:?}", app.state).to_lowercase(),
                };
                println!(
                    "  └ {:<12}  {:<20}  {:<14}  {}",
                    &app.id[..12],
                    app.name,
                    st,
                    app.image
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(ctx: &Ctx, pod: &str, json: bool) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let p = rt.find_pod(&ctx.namespace, pod)?;
    let v = view(&rt, &p)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("pod {} ({})", v.name, v.id);
    println!("  state: {}", v.state);
    if let Some(c) = v.exit_code {
        println!("  exit code: {c}");
    }
    println!("  created: {}", v.created);
    if !v.ips.is_empty() {
        println!("  ips: {}", v.ips.join(", "));
    }
    for a in &v.apps {
        println!("  app {} ({})", a.name, &a.id[..12]);
        println!("    image: {}", a.image);
        println!("    state: {:?}", a.state);
        if let Some(pid) = a.pid {
            println!("    pid: {pid}");
        }
        if let Some(c) = a.exit_code {
            println!("    exit code: {c} ({})", a.reason.as_deref().unwrap_or(""));
        }
        if let Some(s) = &a.started {
            println!("    started: {s}");
        }
        if let Some(f) = &a.finished {
            println!("    finished: {f}");
        }
        println!("    log: {}", a.log.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The app `name` of a pod, or its main app.
fn pick_app(rt: &Runtime, pod: &PodRecord, name: Option<&str>) -> anyhow::Result<ContainerRecord> {
    let ctrs = rt.list_containers(None, Some(&pod.id))?;
    let want = name.or(pod.config.annotations.get(MAIN_APP).map(String::as_str));
    match want {
        Some(n) => ctrs
            .into_iter()
            .find(|c| c.config.name == n)
            .with_context(|| format!("pod {} has no app {n:?}", pod.config.name)),
        None if ctrs.len() == 1 => Ok(ctrs.into_iter().next().expect("one")),
        None => bail!(
            "pod {} has several apps ({}): choose one with --app",
            pod.config.name,
            ctrs.iter()
                .map(|c| c.config.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub fn exec(ctx: &Ctx, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let pod = rt.find_pod(&ctx.namespace, &a.pod)?;
    let app = pick_app(&rt, &pod, a.app.as_deref())?;
    let req = ExecRequest {
        args: a.command.clone(),
        tty: a.tty,
        env: a.env.clone(),
        cwd: a.workdir.clone(),
    };
    let status = if a.tty {
        let dir = tempfile::Builder::new().prefix("berth-exec").tempdir()?;
        let sock = dir.path().join("console");
        let mut exec = rt.exec_command(&app.id, &req, Some(&sock))?;
        let pid_file = exec
            .pid_file
            .clone()
            .context("exec with a console socket has a pid file")?;
        let cmd = std::mem::replace(&mut exec.command, std::process::Command::new("true"));
        return terminal::run_with_console(cmd, &sock, &pid_file, a.interactive).map(exit_code_of);
    } else {
        let mut exec = rt.exec_command(&app.id, &req, None)?;
        if !a.interactive {
            exec.command.stdin(std::process::Stdio::null());
        }
        exec.command.status().context("run the runtime's exec")?
    };
    Ok(exit_code(status))
}

fn exit_code_of(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ExitCode::from(code.clamp(0, 255) as u8)
}

pub fn logs(ctx: &Ctx, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let pod = rt.find_pod(&ctx.namespace, &a.pod)?;
    let app = pick_app(&rt, &pod, a.app.as_deref())?;
    let opts = berth_runtime::logs::LogOptions {
        follow: a.follow,
        tail: a.tail,
        timestamps: a.timestamps,
    };
    let exit_file = rt.exit_file(&app.id);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    if !app.log_path.exists() {
        return Ok(ExitCode::SUCCESS);
    }
    berth_runtime::logs::copy_log(&app.log_path, &mut out, &mut err, &opts, &|| exit_file.exists())?;
    Ok(ExitCode::SUCCESS)
}

pub fn stop(ctx: &Ctx, pods: &[String], timeout: u64) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    for p in pods {
        let pod = rt.find_pod(&ctx.namespace, p)?;
        rt.stop_pod(&pod.id, Duration::from_secs(timeout))
            .with_context(|| format!("stop pod {}", pod.config.name))?;
        println!("{}", pod.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(ctx: &Ctx, pods: &[String], force: bool) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    for p in pods {
        let pod = rt.find_pod(&ctx.namespace, p)?;
        let v = view(&rt, &pod)?;
        if v.state == "running" && !force {
            bail!(
                "pod {} ({}) is running: stop it first, or use --force",
                pod.config.name,
                &pod.id[..12]
            );
        }
        rt.remove_pod(&pod.id)
            .with_context(|| format!("remove pod {}", pod.config.name))?;
        println!("{}", pod.id);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct StatsRow {
    pod: String,
    app: String,
    #[serde(flatten)]
    stats: berth_runtime::runtime::Stats,
}

pub fn stats(ctx: &Ctx, pod: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let rt = ctx.runtime()?;
    let pods = match pod {
        Some(p) => vec![rt.find_pod(&ctx.namespace, p)?],
        None => rt.list_pods(Some(&ctx.namespace))?,
    };
    let mut rows = Vec::new();
    for p in &pods {
        for c in rt.list_containers(None, Some(&p.id))? {
            if rt.container_status(&c)?.state != ContainerState::Running {
                continue;
            }
            match rt.container_stats(&c.id) {
                Ok(s) => rows.push(StatsRow {
                    pod: p.config.name.clone(),
                    app: c.config.name.clone(),
                    stats: s,
                }),
                Err(e) => tracing::debug!(container = %c.id, "stats: {e}"),
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24}  {:<16}  {:>10}  {:>12}  {:>5}",
        "POD", "APP", "CPU (s)", "MEMORY", "PIDS"
    );
    for r in &rows {
        println!(
            "{:<24}  {:<16}  {:>10.3}  {:>12}  {:>5}",
            r.pod,
            r.app,
            r.stats.usage.cpu_usage_ns as f64 / 1e9,
            super::image::human_size(r.stats.usage.memory_working_set),
            r.stats.usage.pids_current
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes pods of every namespace that have not run for `grace`.
pub fn gc_pods(rt: &Runtime, grace: Duration) -> anyhow::Result<usize> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let mut removed = 0;
    for pod in rt.list_pods(None)? {
        let v = view(rt, &pod)?;
        // A ready pod without exited apps may be a CRI sandbox waiting for
        // its containers: only pods that ran and ended are collected.
        if v.state != "exited" && v.state != "stopped" {
            continue;
        }
        let last = v
            .apps
            .iter()
            .filter_map(|a| a.finished.as_deref())
            .filter_map(|f| {
                time::OffsetDateTime::parse(f, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| t.unix_timestamp_nanos() as i64)
            .chain(pod.stopped_at)
            .max()
            .unwrap_or(pod.created_at);
        if now - last >= grace.as_nanos() as i64 {
            rt.remove_pod(&pod.id)
                .with_context(|| format!("gc: remove pod {}", pod.config.name))?;
            removed += 1;
        }
    }
    Ok(removed)
}
