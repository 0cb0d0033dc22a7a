//! `berth daemon` as kubelet and crictl see it: CRI v1 over its Unix socket,
//! with real images and containers.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{Berth, registry};
use hyper_util::rt::TokioIo;
use k8s_cri::v1;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

fn busybox() -> String {
    format!("{}/busybox:latest", registry())
}

fn image(name: &str) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec {
        image: name.to_string(),
        ..Default::default()
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pod_config(name: &str, logs: &Path) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        labels: [("app".to_string(), name.to_string())].into(),
        annotations: [("note".to_string(), "x".to_string())].into(),
        linux: Some(v1::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

#[test]
fn cri_version_status_and_images() {
    let b = Berth::new();
    let mut d = Daemon::start(&b);
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let mut is = ImageServiceClient::new(ch);

        let v = rs
            .version(v1::VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v.runtime_name, "berth");
        assert_eq!(v.runtime_api_version, "v1");

        // No CNI config in this instance's dir: the network is not ready.
        let st = rs
            .status(v1::StatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        let conds = st.status.unwrap().conditions;
        let cond = |t: &str| conds.iter().find(|c| c.r#type == t).unwrap().clone();
        assert!(cond("RuntimeReady").status);
        let net = cond("NetworkReady");
        assert!(!net.status);
        assert_eq!(net.reason, "NetworkPluginNotReady");

        let img = busybox();
        let missing = is
            .image_status(v1::ImageStatusRequest {
                image: image(&img),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(missing.image.is_none());

        let pulled = is
            .pull_image(v1::PullImageRequest {
                image: image(&img),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(pulled.image_ref.starts_with("sha256:"), "{}", pulled.image_ref);

        let list = is
            .list_images(v1::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.images.len(), 1);
        assert_eq!(list.images[0].id, pulled.image_ref);
        assert_eq!(list.images[0].repo_tags, std::slice::from_ref(&img));
        assert!(list.images[0].repo_digests[0].contains("@sha256:"));
        // Manifest, config and layers: busybox-static alone is most of a MiB.
        assert!(list.images[0].size > 500_000, "{:?}", list.images[0]);

        let status = is
            .image_status(v1::ImageStatusRequest {
                image: image(&img),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .expect("pulled image has a status");
        assert_eq!(status.id, pulled.image_ref);

        let fs = is
            .image_fs_info(v1::ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(fs.image_filesystems[0].used_bytes.unwrap().value > 0);

        for _ in 0..2 {
            is.remove_image(v1::RemoveImageRequest { image: image(&img) })
                .await
                .unwrap();
        }
        let list = is
            .list_images(v1::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(list.images.is_empty());
    });
    assert!(d.stop().success(), "daemon: {}", d.log());
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn cri_pod_and_container_lifecycle() {
    let b = Berth::new();
    let mut d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    let rt = rt();
    // Held open across the daemon's shutdown, as kubelet holds it.
    let held = rt.block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let mut is = ImageServiceClient::new(ch);
        let img = busybox();
        is.pull_image(v1::PullImageRequest {
            image: image(&img),
            ..Default::default()
        })
        .await
        .unwrap();

        let mut events = rs
            .get_container_events(v1::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();

        let config = pod_config("web", &logs);
        let pod = rs
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;

        let again = rs
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");

        let ps = rs
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let st = ps.status.unwrap();
        assert_eq!(st.state, v1::PodSandboxState::SandboxReady as i32);
        assert_eq!(st.metadata.as_ref().unwrap().name, "web");
        assert_eq!(st.metadata.as_ref().unwrap().namespace, "default");
        assert_eq!(st.labels["app"], "web");
        assert_eq!(st.annotations, config.annotations);
        assert!(ps.info["info"].contains(&pod));

        let listed = rs
            .list_pod_sandbox(v1::ListPodSandboxRequest {
                filter: Some(v1::PodSandboxFilter {
                    id: pod[..12].to_string(),
                    label_selector: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.items.len(), 1);

        let missing = rs
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(v1::ContainerConfig {
                    metadata: Some(v1::ContainerMetadata {
                        name: "bad".into(),
                        attempt: 0,
                    }),
                    image: image("nosuch.example/missing:1"),
                    ..Default::default()
                }),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
        assert!(
            missing.message().contains("nosuch.example/missing:1"),
            "{missing:?}"
        );

        let ctr = rs
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(v1::ContainerConfig {
                    metadata: Some(v1::ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: image(&img),
                    command: vec!["sh".into(), "-c".into(), "echo hello; sleep 1000".into()],
                    log_path: "app/0.log".into(),
                    labels: [("tier".to_string(), "front".to_string())].into(),
                    ..Default::default()
                }),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rs.start_container(v1::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();

        let status = |rs: &mut RuntimeServiceClient<Channel>| {
            let mut rs = rs.clone();
            let id = ctr.clone();
            async move {
                rs.container_status(v1::ContainerStatusRequest {
                    container_id: id,
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap()
            }
        };
        let st = status(&mut rs).await;
        assert_eq!(st.state, v1::ContainerState::ContainerRunning as i32);
        assert_eq!(st.metadata.as_ref().unwrap().name, "app");
        assert_eq!(st.labels["tier"], "front");
        assert!(st.started_at > 0);
        let log_path = logs.join("app/0.log");
        assert_eq!(st.log_path, log_path.display().to_string());

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.lines().any(|l| l.ends_with(" stdout F hello")) {
                break;
            }
            assert!(Instant::now() < deadline, "log has no hello line: {log:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let listed = rs
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    pod_sandbox_id: pod.clone(),
                    state: Some(v1::ContainerStateValue {
                        state: v1::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.containers.len(), 1);
        assert_eq!(listed.containers[0].id, ctr);

        let out = rs
            .exec_sync(v1::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["sh".into(), "-c".into(), "echo hi; exit 3".into()],
                timeout: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stdout, b"hi\n");

        let started = Instant::now();
        let timed_out = rs
            .exec_sync(v1::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["sleep".into(), "10".into()],
                timeout: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(timed_out.code(), tonic::Code::DeadlineExceeded, "{timed_out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        let stats = rs
            .container_stats(v1::ContainerStatsRequest {
                container_id: ctr.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        assert!(stats.memory.unwrap().usage_bytes.unwrap().value > 0);
        assert_eq!(stats.attributes.unwrap().id, ctr);
        let pod_stats = rs
            .list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(pod_stats.stats.len(), 1);

        rs.update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: ctr.clone(),
            linux: Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
        // cgroup v2: one hierarchy, memory.max; v1: the memory hierarchy.
        let limit = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            format!("/sys/fs/cgroup{}/{pod}/{ctr}/memory.max", b.cgroup_parent())
        } else {
            format!(
                "/sys/fs/cgroup/memory{}/{pod}/{ctr}/memory.limit_in_bytes",
                b.cgroup_parent()
            )
        };
        assert_eq!(
            std::fs::read_to_string(&limit).unwrap().trim(),
            (96u64 << 20).to_string()
        );

        rs.reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();

        rs.stop_container(v1::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
        let st = status(&mut rs).await;
        assert_eq!(st.state, v1::ContainerState::ContainerExited as i32);
        assert!([137, 143].contains(&st.exit_code), "exit code {}", st.exit_code);
        assert!(st.finished_at >= st.started_at);
        // Stopping again is success.
        rs.stop_container(v1::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 1,
        })
        .await
        .unwrap();

        for _ in 0..2 {
            rs.remove_container(v1::RemoveContainerRequest {
                container_id: ctr.clone(),
            })
            .await
            .unwrap();
        }
        rs.stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        let st = rs
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.state, v1::PodSandboxState::SandboxNotready as i32);
        for _ in 0..2 {
            rs.remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        }
        let gone = rs
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound);

        let mut kinds = Vec::new();
        while kinds.len() < 2 {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .expect("container events arrive")
                .unwrap()
                .unwrap();
            assert_eq!(ev.container_id, ctr);
            kinds.push(ev.container_event_type);
        }
        assert_eq!(
            kinds,
            [
                v1::ContainerEventType::ContainerCreatedEvent as i32,
                v1::ContainerEventType::ContainerStartedEvent as i32
            ]
        );
        events
    });
    assert!(d.stop().success(), "daemon: {}", d.log());
    drop(held);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn kill_9_of_the_daemon_leaves_containers_running_and_a_restart_finds_them() {
    let b = Berth::new();
    let logs = b.dir.path().join("logs");
    let rt = rt();
    let mut d = Daemon::start(&b);
    let (pod, ctr) = rt.block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let mut is = ImageServiceClient::new(ch);
        is.pull_image(v1::PullImageRequest {
            image: image(&busybox()),
            ..Default::default()
        })
        .await
        .unwrap();
        let config = pod_config("survivor", &logs);
        let pod = rs
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let ctr = rs
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(v1::ContainerConfig {
                    metadata: Some(v1::ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: image(&busybox()),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        "trap 'exit 42' TERM; while true; do sleep 0.1; done".into(),
                    ],
                    log_path: "app/0.log".into(),
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rs.start_container(v1::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
        (pod, ctr)
    });
    // No goodbye: the daemon is gone at once, the container is not.
    let pid = rustix::process::Pid::from_raw(d.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    d.child.wait().unwrap();
    let _ = std::fs::remove_file(&d.socket);
    let running = b.json("k8s.io", &["status", "--json", &pod]);
    assert_eq!(running["apps"][0]["state"], "running", "{running}");

    let d2 = Daemon::start(&b);
    rt.block_on(async {
        let mut rs = RuntimeServiceClient::new(d2.channel().await);
        let status = |rs: &mut RuntimeServiceClient<Channel>| {
            let mut rs = rs.clone();
            let ctr = ctr.clone();
            async move {
                rs.container_status(v1::ContainerStatusRequest {
                    container_id: ctr,
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap()
            }
        };
        assert_eq!(
            status(&mut rs).await.state,
            v1::ContainerState::ContainerRunning as i32
        );
        let listed = rs
            .list_containers(v1::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner();
        assert!(listed.containers.iter().any(|c| c.id == ctr), "{listed:?}");
        rs.stop_container(v1::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 10,
        })
        .await
        .unwrap();
        let st = status(&mut rs).await;
        assert_eq!(st.state, v1::ContainerState::ContainerExited as i32);
        assert_eq!(st.exit_code, 42, "the exit the restarted daemon saw: {st:?}");
        rs.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    });
    drop(d2);
    let left = b.leftovers();
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
}

/// Pulls busybox and starts pod `name` with one container per `(name,
/// command, stdin)`; returns the pod id and the container ids.
async fn pod_with(
    ch: &Channel,
    name: &str,
    logs: &Path,
    apps: &[(&str, &str, bool)],
) -> (String, Vec<String>) {
    let mut rs = RuntimeServiceClient::new(ch.clone());
    let mut is = ImageServiceClient::new(ch.clone());
    is.pull_image(v1::PullImageRequest {
        image: image(&busybox()),
        ..Default::default()
    })
    .await
    .unwrap();
    let config = pod_config(name, logs);
    let pod = rs
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut ids = Vec::new();
    for (app, script, stdin) in apps {
        let id = rs
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(v1::ContainerConfig {
                    metadata: Some(v1::ContainerMetadata {
                        name: app.to_string(),
                        attempt: 0,
                    }),
                    image: image(&busybox()),
                    command: vec!["sh".into(), "-c".into(), script.to_string()],
                    log_path: format!("{app}/0.log"),
                    stdin: *stdin,
                    stdin_once: *stdin,
                    ..Default::default()
                }),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rs.start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        ids.push(id);
    }
    (pod, ids)
}

async fn remove_pod(rs: &mut RuntimeServiceClient<Channel>, pod: &str) {
    rs.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .unwrap();
    rs.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .unwrap();
}

fn exec_req(ctr: &str, cmd: &[&str], tty: bool, stdin: bool) -> v1::ExecRequest {
    v1::ExecRequest {
        container_id: ctr.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

#[test]
fn cri_exec_attach_and_port_forward_over_spdy_and_websocket() {
    use berth_cri::stream::TermSize;
    use berth_cri::stream::client;

    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let (pod, ids) = pod_with(
            &ch,
            "streams",
            &logs,
            &[
                (
                    "web",
                    "mkdir -p /www && echo served-from-the-pod > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www",
                    false,
                ),
                ("echo", "while read l; do echo got:$l; done; exit 5", true),
            ],
        )
        .await;
        let (web, echo) = (&ids[0], &ids[1]);

        // Exec without a tty, both transports: three streams and the exit code.
        let script = "echo out; echo err >&2; read x; echo in:$x; exit 3";
        for transport in ["spdy", "websocket"] {
            let url = rs
                .exec(exec_req(web, &["sh", "-c", script], false, true))
                .await
                .unwrap()
                .into_inner()
                .url;
            assert!(url.starts_with("http://127.0.0.1:"), "{url}");
            let out = match transport {
                "spdy" => client::exec_spdy(&url, Some(b"abc\n".to_vec()), false, None).await,
                _ => client::exec_websocket(&url, Some(b"abc\n".to_vec()), false, None).await,
            }
            .unwrap_or_else(|e| panic!("{transport} exec: {e}: {e:?}"));
            assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nin:abc\n", "{transport}");
            assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n", "{transport}");
            assert_eq!(out.exit_code, 3, "{transport}");
            // The URL was for one use only.
            let again = client::exec_spdy(&url, None, false, None).await;
            assert!(again.is_err(), "{transport}: a used URL served again");
        }

        // Exec with a tty, both transports: a terminal of the size the
        // client set, output on stdout only.
        for transport in ["spdy", "websocket"] {
            let url = rs
                .exec(exec_req(web, &["sh", "-c", "read x; stty size; tty; exit 7"], true, true))
                .await
                .unwrap()
                .into_inner()
                .url;
            let size = Some(TermSize {
                width: 91,
                height: 33,
            });
            let out = match transport {
                "spdy" => client::exec_spdy(&url, Some(b"go\r".to_vec()), true, size).await,
                _ => client::exec_websocket(&url, Some(b"go\r".to_vec()), true, size).await,
            }
            .unwrap_or_else(|e| panic!("{transport} tty exec: {e}"));
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("33 91"), "{transport}: {text:?}");
            assert!(text.contains("/dev/pts/"), "{transport}: {text:?}");
            assert!(out.stderr.is_empty(), "{transport}");
            assert_eq!(out.exit_code, 7, "{transport}");
        }

        // Bad requests name what is wrong.
        let both = rs.exec(v1::ExecRequest {
            stderr: true,
            ..exec_req(web, &["true"], true, false)
        });
        let e = both.await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("tty and stderr"), "{e:?}");
        let e = rs.exec(exec_req("nosuch", &["true"], false, false)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

        // Attach: stdin reaches the container's main process, its output
        // comes back, and closing stdin (stdin_once) ends it.
        let url = rs
            .attach(v1::AttachRequest {
                container_id: echo.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let out = client::exec_spdy(&url, Some(b"one\ntwo\n".to_vec()), false, None)
            .await
            .expect("attach");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "got:one\ngot:two\n");
        let st = rs
            .container_status(v1::ContainerStatusRequest {
                container_id: echo.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.exit_code, 5, "stdin_once: the app saw EOF and exited: {st:?}");

        // Port-forward to the pod's loopback, both transports.
        for transport in ["spdy", "websocket"] {
            let url = rs
                .port_forward(v1::PortForwardRequest {
                    pod_sandbox_id: pod.clone(),
                    port: vec![8080],
                })
                .await
                .unwrap()
                .into_inner()
                .url;
            let request = b"GET /index.html HTTP/1.0\r\n\r\n".to_vec();
            let reply = match transport {
                "spdy" => client::port_forward_spdy(&url, 8080, request).await,
                _ => client::port_forward_websocket(&url, 8080, request, None).await,
            }
            .unwrap_or_else(|e| panic!("{transport} port-forward: {e}"));
            let text = String::from_utf8_lossy(&reply);
            assert!(text.starts_with("HTTP/1.1 200 OK"), "{transport}: {text}");
            assert!(text.contains("served-from-the-pod"), "{transport}: {text}");
        }

        remove_pod(&mut rs, &pod).await;
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn a_pod_created_after_the_clients_deadline_is_handed_to_its_retry() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let mut rs = RuntimeServiceClient::new(d.channel().await);
        let config = pod_config("late", &logs);
        let request = || v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        // A deadline no pod start can meet: the client gives up, the
        // creation goes on.
        let mut first = tonic::Request::new(request());
        first.set_timeout(Duration::from_millis(1));
        let e = rs.run_pod_sandbox(first).await.unwrap_err();
        assert!(
            matches!(e.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
            "{e:?}"
        );
        // The retry gets the pod the first call made (while that call is
        // still running, the name is taken).
        let deadline = Instant::now() + Duration::from_secs(60);
        let id = loop {
            match rs.run_pod_sandbox(request()).await {
                Ok(r) => break r.into_inner().pod_sandbox_id,
                Err(e) if e.code() == tonic::Code::AlreadyExists && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("retry: {e:?}"),
            }
        };
        let pods = rs
            .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(pods.len(), 1, "{pods:?}");
        assert_eq!(pods[0].id, id);
        // Handed out once: a further call is a plain name clash again.
        let e = rs.run_pod_sandbox(request()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
        remove_pod(&mut rs, &id).await;
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn socket_activation_and_readiness_notification() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let b = Berth::new();
    let socket = b.dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let notify = b.dir.path().join("notify.sock");
    let ready = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    ready.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let unused = b.dir.path().join("unused.sock");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    // `exec` keeps the pid that LISTEN_PID names, as systemd sets it.
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_berth"))
        .arg("--config")
        .arg(&b.config)
        .args(["daemon", "--socket"])
        .arg(&unused)
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only dup2/fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let three = std::os::fd::BorrowedFd::borrow_raw(3);
                rustix::io::fcntl_setfd(three, rustix::io::FdFlags::empty())?;
            } else {
                nix::unistd::dup2(fd, 3)?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut buf = [0u8; 64];
    let n = ready.recv(&mut buf).expect("READY=1 from the daemon");
    assert_eq!(&buf[..n], b"READY=1");
    let path = socket.clone();
    let version = rt().block_on(async move {
        let ch =
            Endpoint::try_from("http://localhost")
                .unwrap()
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                    }
                }))
                .await
                .unwrap();
        RuntimeServiceClient::new(ch)
            .version(v1::VersionRequest::default())
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(version.runtime_name, "berth");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!unused.exists(), "an activated daemon bound its own socket");
    assert!(
        socket.exists(),
        "the activated socket belongs to systemd, not the daemon"
    );
    drop(listener);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn cri_runtime_handler_picks_the_oci_runtime() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let handlers = rs
            .status(v1::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner()
            .runtime_handlers;
        let names: Vec<_> = handlers.iter().map(|h| h.name.as_str()).collect();
        assert!(names.contains(&"berth") && names.contains(&"runc"), "{names:?}");

        let e = rs
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(pod_config("nohandler", &logs)),
                runtime_handler: "nosuch".into(),
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("nosuch"), "{e:?}");
        assert_ne!(e.code(), tonic::Code::Ok);

        let mut is = ImageServiceClient::new(ch.clone());
        is.pull_image(v1::PullImageRequest {
            image: image(&busybox()),
            ..Default::default()
        })
        .await
        .unwrap();
        let config = pod_config("onrunc", &logs);
        let pod = rs
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: "runc".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let ctr = rs
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(v1::ContainerConfig {
                    metadata: Some(v1::ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: image(&busybox()),
                    command: vec!["sleep".into(), "1000".into()],
                    log_path: "app/0.log".into(),
                    linux: Some(v1::LinuxContainerConfig {
                        security_context: Some(v1::LinuxContainerSecurityContext {
                            run_as_user: Some(v1::Int64Value { value: 1234 }),
                            run_as_group: Some(v1::Int64Value { value: 4321 }),
                            supplemental_groups: vec![5],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rs.start_container(v1::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
        // runc itself knows the container: it is the one that runs it.
        let listed = Command::new("runc")
            .arg("--root")
            .arg(b.dir.path().join("s/oci/runc"))
            .args(["list", "-q"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        let verbose = rs
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verbose.status.unwrap().runtime_handler, "runc");
        // The identity the process runs as, as resolved at creation.
        let user = rs
            .container_status(v1::ContainerStatusRequest {
                container_id: ctr.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .user
            .and_then(|u| u.linux)
            .expect("ContainerStatus.user");
        assert_eq!((user.uid, user.gid), (1234, 4321));
        assert!(user.supplemental_groups.contains(&5), "{user:?}");
        assert!(listed.contains(&ctr), "runc list: {listed:?}");
        remove_pod(&mut rs, &pod).await;
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// A pod whose containers each get their own PID namespace (what kubelet
/// asks for a pod without shareProcessNamespace), so a container's process
/// is the init of its namespace.
fn pod_config_own_pid(name: &str, logs: &Path) -> v1::PodSandboxConfig {
    let mut config = pod_config(name, logs);
    config.linux = Some(v1::LinuxPodSandboxConfig {
        security_context: Some(v1::LinuxSandboxSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                pid: v1::NamespaceMode::Container as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

async fn create_in(
    rs: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    config: &v1::PodSandboxConfig,
    name: &str,
    script: &str,
) -> String {
    rs.create_container(v1::CreateContainerRequest {
        pod_sandbox_id: pod.to_string(),
        config: Some(v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: image(&busybox()),
            command: vec!["sh".into(), "-c".into(), script.into()],
            log_path: format!("{name}.log"),
            ..Default::default()
        }),
        sandbox_config: Some(config.clone()),
    })
    .await
    .unwrap()
    .into_inner()
    .container_id
}

async fn short_status(rs: &mut RuntimeServiceClient<Channel>, id: &str) -> v1::ContainerStatus {
    rs.container_status(v1::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

/// StopContainer right after StartContainer, before the container's PID 1
/// installed its SIGTERM handler: the kernel drops the first SIGTERM (a
/// namespace init with the default action), berth sends it again once the
/// handler is there, and the container ends through its handler (42), not
/// through SIGKILL at the end of the grace period (137). Twenty times.
#[test]
fn stop_right_after_start_ends_the_container_through_its_stop_signal() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        ImageServiceClient::new(ch.clone())
            .pull_image(v1::PullImageRequest {
                image: image(&busybox()),
                ..Default::default()
            })
            .await
            .unwrap();
        let config = pod_config_own_pid("stopsignal", &logs);
        let pod = rs
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        for i in 0..20 {
            let id = create_in(
                &mut rs,
                &pod,
                &config,
                &format!("late-trap-{i}"),
                "sleep 0.2; trap 'exit 42' TERM; while :; do sleep 0.05; done",
            )
            .await;
            rs.start_container(v1::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            rs.stop_container(v1::StopContainerRequest {
                container_id: id.clone(),
                timeout: 30,
            })
            .await
            .unwrap();
            let st = short_status(&mut rs, &id).await;
            assert_eq!(st.state, v1::ContainerState::ContainerExited as i32, "try {i}");
            assert_eq!(st.exit_code, 42, "try {i}: the stop signal was lost: {st:?}");
            rs.remove_container(v1::RemoveContainerRequest { container_id: id })
                .await
                .unwrap();
        }
        remove_pod(&mut rs, &pod).await;
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// StartContainer and StopContainer of one container at the same moment:
/// whichever comes first, the stop wins and the container ends up exited,
/// its process gone; a start that lost says why.
#[test]
fn concurrent_start_and_stop_leave_nothing_running() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        ImageServiceClient::new(ch.clone())
            .pull_image(v1::PullImageRequest {
                image: image(&busybox()),
                ..Default::default()
            })
            .await
            .unwrap();
        let config = pod_config_own_pid("startstop", &logs);
        let pod = rs
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        for i in 0..10 {
            let id = create_in(&mut rs, &pod, &config, &format!("race-{i}"), "exec sleep 1000").await;
            let (mut a, mut s) = (rs.clone(), rs.clone());
            let start = a.start_container(v1::StartContainerRequest {
                container_id: id.clone(),
            });
            let stop = s.stop_container(v1::StopContainerRequest {
                container_id: id.clone(),
                timeout: 2,
            });
            let (started, stopped) = tokio::join!(start, stop);
            stopped.unwrap();
            if let Err(e) = started {
                assert!(e.message().contains("not created"), "try {i}: {e:?}");
            }
            // A start that won the race is stopped by a stop that follows.
            rs.stop_container(v1::StopContainerRequest {
                container_id: id.clone(),
                timeout: 2,
            })
            .await
            .unwrap();
            let st = short_status(&mut rs, &id).await;
            assert_eq!(
                st.state,
                v1::ContainerState::ContainerExited as i32,
                "try {i}: {st:?}"
            );
            rs.remove_container(v1::RemoveContainerRequest { container_id: id })
                .await
                .unwrap();
        }
        remove_pod(&mut rs, &pod).await;
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// A container config of busybox running `command`, logging to
/// `NAME/0.log` in the pod's log directory.
fn busybox_container(name: &str, command: &[&str]) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: image(&busybox()),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

/// Pulls busybox and runs pod `name` on `handler` ("" = the default).
async fn pod_on(ch: &Channel, name: &str, logs: &Path, handler: &str) -> (String, v1::PodSandboxConfig) {
    let mut is = ImageServiceClient::new(ch.clone());
    is.pull_image(v1::PullImageRequest {
        image: image(&busybox()),
        ..Default::default()
    })
    .await
    .unwrap();
    let config = pod_config(name, logs);
    let pod = RuntimeServiceClient::new(ch.clone())
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    (pod, config)
}

async fn create_ctr(
    rs: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    sandbox: &v1::PodSandboxConfig,
    config: v1::ContainerConfig,
) -> Result<String, tonic::Status> {
    rs.create_container(v1::CreateContainerRequest {
        pod_sandbox_id: pod.to_string(),
        config: Some(config),
        sandbox_config: Some(sandbox.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

async fn start_ctr(rs: &mut RuntimeServiceClient<Channel>, ctr: &str) {
    rs.start_container(v1::StartContainerRequest {
        container_id: ctr.to_string(),
    })
    .await
    .unwrap();
}

async fn ctr_status(
    rs: &mut RuntimeServiceClient<Channel>,
    ctr: &str,
    verbose: bool,
) -> v1::ContainerStatusResponse {
    rs.container_status(v1::ContainerStatusRequest {
        container_id: ctr.to_string(),
        verbose,
    })
    .await
    .unwrap()
    .into_inner()
}

/// Whether the cgroup hierarchy berth and runc use offers hugetlb: a v1
/// hierarchy of its own, or the controller in a pure v2 root. A hybrid
/// host's cgroup2 mount (/sys/fs/cgroup/unified) does not count.
fn host_has_hugetlb() -> bool {
    let root = Path::new("/sys/fs/cgroup");
    match std::fs::read_to_string(root.join("cgroup.controllers")) {
        Ok(c) => c.split_whitespace().any(|c| c == "hugetlb"),
        Err(_) => std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().split(',').any(|c| c == "hugetlb")),
    }
}

/// The resources kubelet sends with every container of a BestEffort pod:
/// a period without a quota, the smallest shares, and a zero limit for
/// each huge page size.
fn kubelet_resources(hugepages: i64) -> v1::LinuxContainerResources {
    v1::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 0,
        cpu_shares: 2,
        oom_score_adj: 1000,
        hugepage_limits: vec![v1::HugepageLimit {
            page_size: "2MB".into(),
            limit: hugepages as u64,
        }],
        ..Default::default()
    }
}

#[test]
fn zero_hugepage_limits_start_on_every_handler_where_hugetlb_is_missing() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    let hugetlb = host_has_hugetlb();
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        for handler in ["", "runc"] {
            let (pod, sandbox) = pod_on(&ch, &format!("huge{handler}"), &logs, handler).await;
            let mut config = busybox_container("app", &["sleep", "1000"]);
            config.linux = Some(v1::LinuxContainerConfig {
                resources: Some(kubelet_resources(0)),
                ..Default::default()
            });
            let ctr = create_ctr(&mut rs, &pod, &sandbox, config.clone())
                .await
                .unwrap_or_else(|e| panic!("handler {handler:?}: {e:?}"));
            start_ctr(&mut rs, &ctr).await;
            let st = ctr_status(&mut rs, &ctr, false).await.status.unwrap();
            assert_eq!(
                st.state,
                v1::ContainerState::ContainerRunning as i32,
                "handler {handler:?}: {st:?}"
            );
            if !hugetlb {
                // A real limit cannot be enforced here: refused, naming
                // the controller and the page size.
                let mut config = busybox_container("limited", &["sleep", "1000"]);
                config.linux = Some(v1::LinuxContainerConfig {
                    resources: Some(kubelet_resources(4 << 20)),
                    ..Default::default()
                });
                let e = create_ctr(&mut rs, &pod, &sandbox, config).await.unwrap_err();
                assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
                assert!(
                    e.message().contains("hugetlb") && e.message().contains("2MB"),
                    "{e:?}"
                );
            }
            remove_pod(&mut rs, &pod).await;
        }
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn a_failed_create_leaves_no_log_file() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        for handler in ["", "runc"] {
            let (pod, sandbox) = pod_on(&ch, &format!("nolog{handler}"), &logs, handler).await;
            let mut bad_mount = busybox_container("badmount", &["sleep", "1000"]);
            bad_mount.mounts = vec![v1::Mount {
                container_path: "/data".into(),
                host_path: b.dir.path().join("no/such/dir").display().to_string(),
                ..Default::default()
            }];
            for config in [busybox_container("nocmd", &["/no/such/command"]), bad_mount] {
                let name = config.metadata.as_ref().unwrap().name.clone();
                let log = logs.join(&config.log_path);
                let e = create_ctr(&mut rs, &pod, &sandbox, config).await.unwrap_err();
                assert!(
                    !log.exists(),
                    "handler {handler:?}: {name}: create failed ({e:?}) but left {}",
                    log.display()
                );
            }
            remove_pod(&mut rs, &pod).await;
        }
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn a_pod_without_namespace_options_shares_one_pid_namespace() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let (pod, sandbox) = pod_on(&ch, "sharedpid", &logs, "").await;
        assert!(sandbox.linux.as_ref().unwrap().security_context.is_none());
        let mut ids = Vec::new();
        for (name, secs) in [("one", "1001"), ("two", "1002")] {
            let ctr = create_ctr(&mut rs, &pod, &sandbox, busybox_container(name, &["sleep", secs]))
                .await
                .unwrap();
            start_ctr(&mut rs, &ctr).await;
            ids.push(ctr);
        }
        let out = rs
            .exec_sync(v1::ExecSyncRequest {
                container_id: ids[1].clone(),
                cmd: vec!["ps".into(), "-o".into(), "args".into()],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        let ps = String::from_utf8_lossy(&out.stdout);
        assert!(ps.contains("sleep 1001") && ps.contains("sleep 1002"), "{ps}");
        let st = rs
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        let ns = st.linux.unwrap().namespaces.unwrap().options.unwrap();
        assert_eq!(ns.pid, v1::NamespaceMode::Pod as i32, "{ns:?}");
        remove_pod(&mut rs, &pod).await;
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn image_ids_agree_across_pull_list_status_and_events() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let mut is = ImageServiceClient::new(ch.clone());
        let pulled = is
            .pull_image(v1::PullImageRequest {
                image: image(&busybox()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .image_ref;
        let mut events = rs
            .get_container_events(v1::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
        let (pod, sandbox) = pod_on(&ch, "imageids", &logs, "").await;
        let ctr = create_ctr(
            &mut rs,
            &pod,
            &sandbox,
            busybox_container("app", &["sleep", "1000"]),
        )
        .await
        .unwrap();
        start_ctr(&mut rs, &ctr).await;
        let st = ctr_status(&mut rs, &ctr, false).await.status.unwrap();
        let listed = rs
            .list_containers(v1::ListContainersRequest {
                filter: Some(v1::ContainerFilter {
                    id: ctr.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(listed.len(), 1);
        assert_eq!(st.image_id, pulled);
        assert_eq!(listed[0].image_id, pulled);
        assert!(st.image_ref.contains("@sha256:"), "{}", st.image_ref);
        assert_eq!(listed[0].image_ref, st.image_ref);
        for kind in [
            v1::ContainerEventType::ContainerCreatedEvent,
            v1::ContainerEventType::ContainerStartedEvent,
        ] {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .expect("container events arrive")
                .unwrap()
                .unwrap();
            assert_eq!(ev.container_event_type, kind as i32);
            let evs = &ev.containers_statuses[0];
            assert_eq!((&evs.image_id, &evs.image_ref), (&pulled, &st.image_ref));
        }
        remove_pod(&mut rs, &pod).await;
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn verbose_container_status_has_the_runtime_spec_and_pid() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let (pod, sandbox) = pod_on(&ch, "verbose", &logs, "").await;
        let command = ["sleep", "1003"];
        let ctr = create_ctr(&mut rs, &pod, &sandbox, busybox_container("app", &command))
            .await
            .unwrap();
        start_ctr(&mut rs, &ctr).await;
        let resp = ctr_status(&mut rs, &ctr, true).await;
        let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
        assert_eq!(
            info["runtimeSpec"]["process"]["args"],
            serde_json::json!(command),
            "{info}"
        );
        assert!(info["runtimeSpec"]["linux"]["namespaces"].is_array(), "{info}");
        let pid = info["pid"].as_u64().expect("info.pid");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert_eq!(cmdline, b"sleep\x001003\x00");
        // berth's own fields stay.
        assert_eq!(info["id"], ctr.as_str(), "{info}");
        remove_pod(&mut rs, &pod).await;
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// A CNI bridge network of the test's own (bridge `bm<hex>`, a /24 of its
/// own), written into `b`'s CNI dir; the bridge is deleted on drop.
struct TestBridge(String);

impl TestBridge {
    fn new(b: &Berth) -> TestBridge {
        let r = std::process::id() ^ (Instant::now().elapsed().subsec_nanos() << 8);
        let bridge = format!("bm{:06x}", r & 0xff_ffff);
        let subnet = format!("10.{}.{}", 200 + (r >> 24) % 50, (r >> 16) & 0xff);
        let ipam = b.dir.path().join("ipam");
        let conflist = format!(
            r#"{{"cniVersion": "1.0.0", "name": "metrics", "plugins": [
  {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false,
    "ipam": {{"type": "host-local", "dataDir": "{}", "ranges": [[{{"subnet": "{subnet}.0/24"}}]]}}}}]}}"#,
            ipam.display()
        );
        std::fs::create_dir_all(b.cni_dir()).unwrap();
        std::fs::write(b.cni_dir().join("10-metrics.conflist"), conflist).unwrap();
        TestBridge(bridge)
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// PodSandboxStats carries the pod's interface counters, read from its
/// network namespace, and they move when traffic flows; the CRI metrics
/// carry the same counters and the containers' cgroup figures under
/// cAdvisor's names.
#[test]
fn pod_network_statistics_and_cri_metrics_follow_the_pods_traffic() {
    let b = Berth::new();
    let bridge = TestBridge::new(&b);
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let (pod, ids) = pod_with(&ch, "netstats", &logs, &[("app", "exec sleep 1000", false)]).await;
        let ip = rs
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .network
            .unwrap()
            .ip;
        let eth0 = |s: v1::PodSandboxStatsResponse| {
            let net = s
                .stats
                .unwrap()
                .linux
                .unwrap()
                .network
                .expect("network statistics");
            let i = net.default_interface.expect("default interface");
            assert_eq!(i.name, "eth0");
            assert!(
                net.interfaces.iter().all(|i| i.name != "lo"),
                "{:?}",
                net.interfaces
            );
            (i.rx_bytes.unwrap().value, i.tx_bytes.unwrap().value)
        };
        let stats = |rs: &mut RuntimeServiceClient<Channel>| {
            let mut rs = rs.clone();
            let pod = pod.clone();
            async move {
                rs.pod_sandbox_stats(v1::PodSandboxStatsRequest { pod_sandbox_id: pod })
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        let (rx0, tx0) = eth0(stats(&mut rs).await);
        let ping = Command::new("/bin/busybox")
            .args(["ping", "-c", "5", "-s", "1000", "-W", "2", &ip])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "ping {ip}: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
        let (rx1, tx1) = eth0(stats(&mut rs).await);
        assert!(rx1 >= rx0 + 5 * 1000, "rx {rx0} -> {rx1}");
        assert!(tx1 >= tx0 + 5 * 1000, "tx {tx0} -> {tx1}");

        let names: Vec<String> = rs
            .list_metric_descriptors(v1::ListMetricDescriptorsRequest {})
            .await
            .unwrap()
            .into_inner()
            .descriptors
            .into_iter()
            .map(|d| d.name)
            .collect();
        for want in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
            "container_network_receive_bytes_total",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        let metrics = rs
            .list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics;
        let ours = metrics
            .iter()
            .find(|m| m.pod_sandbox_id == pod)
            .expect("our pod's metrics");
        let rx = ours
            .metrics
            .iter()
            .find(|m| {
                m.name == "container_network_receive_bytes_total" && m.label_values.last().unwrap() == "eth0"
            })
            .expect("eth0 receive counter");
        assert!(rx.value.as_ref().unwrap().value >= rx1, "{rx:?}");
        let app = ours
            .container_metrics
            .iter()
            .find(|c| c.container_id == ids[0])
            .expect("the app's metrics");
        let ws = app
            .metrics
            .iter()
            .find(|m| m.name == "container_memory_working_set_bytes")
            .expect("working set");
        assert!(ws.value.as_ref().unwrap().value > 0, "{ws:?}");
        assert_eq!(ws.label_values[0], "app", "container label: {ws:?}");
        remove_pod(&mut rs, &pod).await;
    });
    drop(d);
    drop(bridge);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// A tmpfs mounted on `<dir>/tmpfs` in the host's mount namespace, as
/// critest's recursive read-only spec sets up a hostPath; unmounted when
/// dropped.
struct HostTmpfs {
    dir: tempfile::TempDir,
}

impl HostTmpfs {
    fn new() -> HostTmpfs {
        let dir = tempfile::Builder::new().prefix("rro").tempdir_in("/tmp").unwrap();
        let sub = dir.path().join("tmpfs");
        std::fs::create_dir(&sub).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "none"])
            .arg(&sub)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", sub.display());
        HostTmpfs { dir }
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path().join("tmpfs"))
            .status();
    }
}

async fn exec_out(rs: &mut RuntimeServiceClient<Channel>, ctr: &str, cmd: &[&str]) -> (i32, String) {
    let out = rs
        .exec_sync(v1::ExecSyncRequest {
            container_id: ctr.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.exit_code, text)
}

#[test]
fn recursive_read_only_mounts_cover_submounts_on_every_handler() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    let host = HostTmpfs::new();
    let host_path = host.dir.path().display().to_string();
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let st = rs
            .status(v1::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        for name in ["", "berth", "runc"] {
            let h = st.runtime_handlers.iter().find(|h| h.name == name);
            assert!(
                h.and_then(|h| h.features)
                    .is_some_and(|f| f.recursive_read_only_mounts),
                "handler {name:?}: {:?}",
                st.runtime_handlers
            );
        }
        let mount = |readonly, rro, propagation: v1::MountPropagation| v1::Mount {
            container_path: "/mnt".into(),
            host_path: host_path.clone(),
            readonly,
            recursive_read_only: rro,
            propagation: propagation as i32,
            ..Default::default()
        };
        for handler in ["", "runc"] {
            let (pod, sandbox) = pod_on(&ch, &format!("rro{handler}"), &logs, handler).await;
            for (name, rro) in [("plain", false), ("rro", true)] {
                let mut config = busybox_container(name, &["sleep", "1000"]);
                config.mounts = vec![mount(true, rro, v1::MountPropagation::PropagationPrivate)];
                let ctr = create_ctr(&mut rs, &pod, &sandbox, config)
                    .await
                    .unwrap_or_else(|e| panic!("handler {handler:?}, {name}: {e:?}"));
                start_ctr(&mut rs, &ctr).await;
                let st = ctr_status(&mut rs, &ctr, false).await.status.unwrap();
                assert_eq!(st.mounts.len(), 1, "{st:?}");
                assert_eq!(st.mounts[0].recursive_read_only, rro, "{st:?}");
                // The top of the mount is read-only either way.
                let (code, out) = exec_out(&mut rs, &ctr, &["touch", "/mnt/top"]).await;
                assert_ne!(code, 0, "handler {handler:?}, {name}: {out}");
                let file = format!("/mnt/tmpfs/{name}{handler}");
                let (code, out) = exec_out(&mut rs, &ctr, &["touch", &file]).await;
                if rro {
                    assert_ne!(code, 0, "handler {handler:?}: rro left the submount writable");
                    assert!(
                        out.contains("Read-only file system"),
                        "handler {handler:?}: {out}"
                    );
                } else {
                    assert_eq!(code, 0, "handler {handler:?}: plain ro submount: {out}");
                }
            }
            // Refused, naming the mount: rro needs ro and private propagation.
            for bad in [
                mount(false, true, v1::MountPropagation::PropagationPrivate),
                mount(true, true, v1::MountPropagation::PropagationHostToContainer),
                mount(true, true, v1::MountPropagation::PropagationBidirectional),
            ] {
                let mut config = busybox_container("bad", &["sleep", "1000"]);
                config.mounts = vec![bad.clone()];
                let e = create_ctr(&mut rs, &pod, &sandbox, config).await.unwrap_err();
                assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}: {e:?}");
                assert!(e.message().contains("/mnt"), "{e:?}");
            }
            remove_pod(&mut rs, &pod).await;
        }
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
    // The submount is the host's: the plain containers wrote into it.
    let tmpfs = host.dir.path().join("tmpfs");
    assert!(tmpfs.join("plain").exists() && tmpfs.join("plainrunc").exists());
    assert!(!tmpfs.join("rro").exists() && !tmpfs.join("rrorunc").exists());
}

/// Imports busybox plus a layer whose /etc/passwd has default-user (1000)
/// and whose /etc/group puts it in group-defined-in-image (50000), as
/// critest's test-image-predefined-group; returns the image's name.
fn predefined_group_image(b: &Berth) -> String {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let run = |cmd: &str, args: &[&str]| {
        let out = Command::new(cmd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let at = |tag: &str| format!("{}:{tag}", layout.display());
    run(
        "skopeo",
        &[
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{}", busybox()),
            &format!("oci:{}", at("base")),
        ],
    );
    let bundle = dir.path().join("bundle");
    let bundle_s = bundle.to_str().unwrap();
    run("umoci", &["unpack", "--image", &at("base"), bundle_s]);
    let etc = bundle.join("rootfs/etc");
    let append = |file: &str, lines: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(etc.join(file))
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
    };
    append("passwd", "default-user:x:1000:1000::/home:/bin/sh\n");
    append(
        "group",
        "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
    );
    run("umoci", &["repack", "--image", &at("groups"), bundle_s]);
    let tar = dir.path().join("groups.tar");
    run(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{}", at("groups")),
            &format!("oci-archive:{}", tar.display()),
        ],
    );
    let name = "example.com/predefined-group:latest";
    b.ok(
        "k8s.io",
        &["image", "import", "--name", name, tar.to_str().unwrap()],
    );
    name.to_string()
}

#[test]
fn supplemental_groups_policy_merge_adds_the_images_groups_and_strict_does_not() {
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    let img = predefined_group_image(&b);
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let st = rs
            .status(v1::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        assert!(
            st.features.is_some_and(|f| f.supplemental_groups_policy),
            "{st:?}"
        );
        for handler in ["", "runc"] {
            let logs = logs.join(format!("groups{handler}"));
            let (pod, sandbox) = pod_on(&ch, &format!("groups{handler}"), &logs, handler).await;
            for (name, policy, want) in [
                (
                    "merge",
                    v1::SupplementalGroupsPolicy::Merge,
                    vec![1000, 1234, 50000],
                ),
                ("strict", v1::SupplementalGroupsPolicy::Strict, vec![1000, 1234]),
            ] {
                let mut config = busybox_container(name, &["sh", "-c", "id -G; sleep 1000"]);
                config.image = image(&img);
                config.linux = Some(v1::LinuxContainerConfig {
                    security_context: Some(v1::LinuxContainerSecurityContext {
                        run_as_user: Some(v1::Int64Value { value: 1000 }),
                        supplemental_groups: vec![1234],
                        supplemental_groups_policy: policy as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                let ctr = create_ctr(&mut rs, &pod, &sandbox, config)
                    .await
                    .unwrap_or_else(|e| panic!("handler {handler:?}, {name}: {e:?}"));
                start_ctr(&mut rs, &ctr).await;
                let st = ctr_status(&mut rs, &ctr, false).await.status.unwrap();
                let user = st.user.and_then(|u| u.linux).unwrap();
                let mut groups = user.supplemental_groups.clone();
                groups.sort();
                assert_eq!(
                    (user.uid, user.gid, groups),
                    (1000, 1000, want.clone()),
                    "handler {handler:?}, {name}"
                );
                // The process and an exec'd one hold exactly these groups.
                let ids = |s: &str| {
                    let mut v: Vec<i64> = s.split_whitespace().map(|g| g.parse().unwrap()).collect();
                    v.sort();
                    v.dedup();
                    v
                };
                let (code, out) = exec_out(&mut rs, &ctr, &["id", "-G"]).await;
                assert_eq!(code, 0, "{out}");
                assert_eq!(ids(&out), want, "handler {handler:?}, {name}: exec: {out}");
                let log = logs.join(format!("{name}/0.log"));
                let deadline = Instant::now() + Duration::from_secs(10);
                let first = loop {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if let Some(line) = text.lines().next() {
                        break line.splitn(4, ' ').nth(3).unwrap_or("").to_string();
                    }
                    assert!(Instant::now() < deadline, "no output in {}", log.display());
                    std::thread::sleep(Duration::from_millis(100));
                };
                assert_eq!(ids(&first), want, "handler {handler:?}, {name}: init: {first}");
            }
            remove_pod(&mut rs, &pod).await;
        }
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// `ls -lnd` of `path` in `ctr`: (uid, gid).
async fn owner_in(rs: &mut RuntimeServiceClient<Channel>, ctr: &str, path: &str) -> (u32, u32) {
    let (code, out) = exec_sync_out(rs, ctr, &["ls", "-lnd", path]).await;
    assert_eq!(code, 0, "ls {path}: {out}");
    let f: Vec<&str> = out.split_whitespace().collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

async fn exec_sync_out(rs: &mut RuntimeServiceClient<Channel>, ctr: &str, cmd: &[&str]) -> (i32, String) {
    let out = rs
        .exec_sync(v1::ExecSyncRequest {
            container_id: ctr.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.exit_code, text)
}

fn userns_options(mode: v1::NamespaceMode, maps: Vec<v1::IdMapping>) -> Option<v1::NamespaceOption> {
    Some(v1::NamespaceOption {
        userns_options: Some(v1::UserNamespace {
            mode: mode as i32,
            uids: maps.clone(),
            gids: maps,
        }),
        ..Default::default()
    })
}

/// KEP-127: a pod with a user namespace of its own. Root inside is the
/// host's 300000: the container's uid_map says so, the image's files show
/// as root's without the layers being chowned, what the container writes
/// to its rootfs and to an idmapped volume is stored as 300000, and a
/// host-root file in a volume that is not idmapped cannot be written.
/// The pinned user namespace and every mount go with the pod. Bad
/// mappings and modes are refused.
#[test]
fn a_pod_with_a_user_namespace_maps_its_root_to_kubelets_range() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let b = Berth::new();
    // The pod's root is no one on the host: the way to berth's state must
    // be searchable by others (the temp dir is 0700).
    std::fs::set_permissions(b.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    let empty = b.dir.path().join("empty");
    let hostpath = b.dir.path().join("hostpath");
    std::fs::create_dir(&empty).unwrap();
    std::fs::create_dir(&hostpath).unwrap();
    std::fs::write(hostpath.join("root-file"), "host\n").unwrap();
    let range = || {
        vec![v1::IdMapping {
            container_id: 0,
            host_id: 300_000,
            length: 65536,
        }]
    };
    rt().block_on(async {
        let ch = d.channel().await;
        let mut rs = RuntimeServiceClient::new(ch.clone());
        let st = rs
            .status(v1::StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        let default = st.runtime_handlers.iter().find(|h| h.name.is_empty()).unwrap();
        assert!(default.features.unwrap().user_namespaces, "{st:?}");

        // Refused: two mappings, container id 0 unmapped, CONTAINER, TARGET.
        let two = vec![
            range()[0],
            v1::IdMapping {
                container_id: 65536,
                host_id: 500_000,
                length: 10,
            },
        ];
        let not_zero = vec![v1::IdMapping {
            container_id: 1,
            ..range()[0]
        }];
        for (i, opts) in [
            userns_options(v1::NamespaceMode::Pod, two),
            userns_options(v1::NamespaceMode::Pod, not_zero),
            userns_options(v1::NamespaceMode::Container, vec![]),
            userns_options(v1::NamespaceMode::Target, vec![]),
        ]
        .into_iter()
        .enumerate()
        {
            let mut config = pod_config(&format!("bad-userns-{i}"), &logs);
            config.linux = Some(v1::LinuxPodSandboxConfig {
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: opts,
                    ..Default::default()
                }),
                ..Default::default()
            });
            let err = rs
                .run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{i}: {err:?}");
        }

        ImageServiceClient::new(ch.clone())
            .pull_image(v1::PullImageRequest {
                image: image(&busybox()),
                ..Default::default()
            })
            .await
            .unwrap();
        let opts = userns_options(v1::NamespaceMode::Pod, range());
        let mut sandbox = pod_config("userns", &logs);
        sandbox.linux = Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: opts.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let pod = rs
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(sandbox.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let pin = b.state().join("pods").join(&pod).join("ns").join("user");
        assert!(pin.exists(), "no pinned user namespace at {}", pin.display());
        let pod_st = rs
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        let reported = pod_st
            .linux
            .unwrap()
            .namespaces
            .unwrap()
            .options
            .unwrap()
            .userns_options
            .unwrap();
        assert_eq!(
            (reported.mode, reported.uids),
            (v1::NamespaceMode::Pod as i32, range())
        );

        let mut config = busybox_container("userns", &["sleep", "1000"]);
        config.mounts = vec![
            v1::Mount {
                container_path: "/empty".into(),
                host_path: empty.display().to_string(),
                uid_mappings: range(),
                gid_mappings: range(),
                ..Default::default()
            },
            v1::Mount {
                container_path: "/host".into(),
                host_path: hostpath.display().to_string(),
                ..Default::default()
            },
        ];
        config.linux = Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: opts.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let ctr = create_ctr(&mut rs, &pod, &sandbox, config).await.unwrap();
        start_ctr(&mut rs, &ctr).await;

        let (code, map) = exec_sync_out(&mut rs, &ctr, &["cat", "/proc/self/uid_map"]).await;
        assert_eq!(code, 0, "{map}");
        assert_eq!(
            map.split_whitespace().collect::<Vec<_>>(),
            ["0", "300000", "65536"],
            "{map}"
        );
        let (_, id) = exec_sync_out(&mut rs, &ctr, &["id"]).await;
        assert!(id.starts_with("uid=0(root) gid=0(root)"), "{id}");

        // The image's files: root's inside, unchanged (0) in the layer.
        assert_eq!(owner_in(&mut rs, &ctr, "/bin/busybox").await, (0, 0));
        assert_eq!(owner_in(&mut rs, &ctr, "/").await, (0, 0));
        let (code, out) = exec_sync_out(
            &mut rs,
            &ctr,
            &["sh", "-c", "echo new > /new-file && echo more >> /etc/passwd"],
        )
        .await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(owner_in(&mut rs, &ctr, "/new-file").await, (0, 0));
        let upper = b.root().join("containers").join(&ctr).join("upper");
        for f in ["new-file", "etc/passwd"] {
            let m = std::fs::metadata(upper.join(f)).unwrap();
            assert_eq!((m.uid(), m.gid()), (300_000, 300_000), "{f} in the upper layer");
        }
        // The pod's files are root's inside too, and readable.
        assert_eq!(owner_in(&mut rs, &ctr, "/etc/hosts").await, (0, 0));
        let (code, out) = exec_sync_out(&mut rs, &ctr, &["cat", "/etc/resolv.conf", "/etc/hostname"]).await;
        assert_eq!(code, 0, "{out}");

        // The idmapped volume: host root's directory is root's inside, and
        // what root writes there is stored as 0, the pod's own id, not the
        // host's 300000 (KEP-127: another pod, with another range, sees
        // the same owners).
        assert_eq!(owner_in(&mut rs, &ctr, "/empty").await, (0, 0));
        let (code, out) = exec_sync_out(&mut rs, &ctr, &["sh", "-c", "echo x > /empty/f"]).await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(owner_in(&mut rs, &ctr, "/empty/f").await, (0, 0));
        let m = std::fs::metadata(empty.join("f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0));

        // The volume that is not idmapped: the host's root is no one here.
        assert_eq!(owner_in(&mut rs, &ctr, "/host/root-file").await, (65534, 65534));
        let (code, out) = exec_sync_out(&mut rs, &ctr, &["sh", "-c", "echo pwned >> /host/root-file"]).await;
        assert_ne!(code, 0, "{out}");
        let (code, out) = exec_sync_out(&mut rs, &ctr, &["touch", "/host/new"]).await;
        assert_ne!(code, 0, "{out}");
        assert_eq!(
            std::fs::read_to_string(hostpath.join("root-file")).unwrap(),
            "host\n"
        );

        remove_pod(&mut rs, &pod).await;
        assert!(!pin.exists(), "{} left", pin.display());
    });
    drop(d);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}
