//! CheckpointContainer through the CRI socket: CRIU checkpoints a running
//! container (left running) into the archive layout CRI-O writes.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{Berth, registry};
use k8s_cri::v1;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// Why checkpointing cannot work on this host, if it cannot: no criu, or a
/// criu that fails its own check (Debian 12's 3.17 on kernels >= 6.13).
fn criu_unusable() -> Option<String> {
    match std::process::Command::new("criu").arg("check").output() {
        Err(e) => Some(format!(
            "criu is not installed ({e}); scripts/install-deps.sh installs it"
        )),
        Ok(out) if !out.status.success() => {
            let text =
                String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
            let first = text
                .lines()
                .find(|l| l.contains("Error"))
                .unwrap_or("")
                .to_owned();
            Some(format!("`criu check` fails on this kernel: {first}"))
        }
        Ok(_) => None,
    }
}

fn image(name: &str) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec {
        image: name.to_string(),
        ..Default::default()
    })
}

/// The last counter value in a CRI log.
fn last_count(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn wait_count(log: &Path, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(n) = last_count(log)
            && n >= at_least
        {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "counter did not reach {at_least}: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn checkpoint_container_writes_cri_o_archive_and_leaves_the_container_running() {
    if let Some(why) = criu_unusable() {
        eprintln!("skipped: {why}");
        return;
    }
    let b = Berth::new();
    let d = Daemon::start(&b);
    let logs = b.dir.path().join("logs");
    let busybox = format!("{}/busybox:latest", registry());
    let archive = b.dir.path().join("out/checkpoint.tar");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let ch = d.channel().await;
            ImageServiceClient::new(ch.clone())
                .pull_image(v1::PullImageRequest {
                    image: image(&busybox),
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut rs = RuntimeServiceClient::new(ch.clone());
            let sandbox = v1::PodSandboxConfig {
                metadata: Some(v1::PodSandboxMetadata {
                    name: "ckpt".into(),
                    uid: "uid-ckpt".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                hostname: "ckpt".into(),
                log_directory: logs.display().to_string(),
                linux: Some(v1::LinuxPodSandboxConfig::default()),
                ..Default::default()
            };
            let pod = rs
                .run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(sandbox.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .pod_sandbox_id;
            let script =
                "echo x > /marker; rm /bin/true; i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done";
            let ctr = rs
                .create_container(v1::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(v1::ContainerConfig {
                        metadata: Some(v1::ContainerMetadata {
                            name: "counter".into(),
                            attempt: 0,
                        }),
                        image: image(&busybox),
                        command: vec!["sh".into(), "-c".into(), script.into()],
                        log_path: "counter/0.log".into(),
                        ..Default::default()
                    }),
                    sandbox_config: Some(sandbox.clone()),
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
            let log = logs.join("counter/0.log");
            let before = wait_count(&log, 5);

            rs.checkpoint_container(v1::CheckpointContainerRequest {
                container_id: ctr.clone(),
                location: archive.display().to_string(),
                timeout: 30,
            })
            .await
            .unwrap();

            // Left running: the counter goes on, the status says so.
            let after = wait_count(&log, before + 5);
            assert!(after > before);
            let st = rs
                .container_status(v1::ContainerStatusRequest {
                    container_id: ctr.clone(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            assert_eq!(st.state, v1::ContainerState::ContainerRunning as i32);

            // A relative location and a missing container are refused.
            let e = rs
                .checkpoint_container(v1::CheckpointContainerRequest {
                    container_id: ctr.clone(),
                    location: "relative.tar".into(),
                    timeout: 0,
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
            let e = rs
                .checkpoint_container(v1::CheckpointContainerRequest {
                    container_id: "nope".into(),
                    location: archive.display().to_string(),
                    timeout: 0,
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

            rs.stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
            rs.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod })
                .await
                .unwrap();
        });
    drop(d);

    let mut names = Vec::new();
    let mut config = String::new();
    let mut deleted = String::new();
    let mut diff = Vec::new();
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        match name.as_str() {
            "config.dump" => drop(e.read_to_string(&mut config)),
            "deleted.files" => drop(e.read_to_string(&mut deleted)),
            "rootfs-diff.tar" => drop(e.read_to_end(&mut diff)),
            _ => {}
        }
        names.push(name);
    }
    for want in [
        "config.dump",
        "spec.dump",
        "rootfs-diff.tar",
        "deleted.files",
        "stats-dump",
        "checkpoint/inventory.img",
        "checkpoint/pstree.img",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert!(
        config["name"].as_str().unwrap().starts_with("counter"),
        "{config}"
    );
    assert_eq!(config["rootfsImageName"], busybox.as_str(), "{config}");
    let deleted: Vec<String> = serde_json::from_str(&deleted).unwrap();
    assert_eq!(deleted, ["bin/true"]);
    let diff_names: Vec<String> = tar::Archive::new(&diff[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(diff_names.iter().any(|n| n == "marker"), "{diff_names:?}");
    assert!(!diff_names.iter().any(|n| n == "bin/true"), "{diff_names:?}");
}

/// The counter values in a CRI log, in order.
fn counts(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
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
        linux: Some(v1::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

#[test]
fn container_created_from_checkpoint_archive_restores_and_counts_on() {
    if let Some(why) = criu_unusable() {
        eprintln!("skipped: {why}");
        return;
    }
    let b = Berth::new();
    let d = Daemon::start(&b);
    let busybox = format!("{}/busybox:latest", registry());
    let archive = b.dir.path().join("out/counter.tar");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let ch = d.channel().await;
            ImageServiceClient::new(ch.clone())
                .pull_image(v1::PullImageRequest {
                    image: image(&busybox),
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut rs = RuntimeServiceClient::new(ch.clone());
            let pods = rs.clone();
            let run_pod = |name: &str| {
                let config = pod_config(name, &b.dir.path().join(name));
                let mut rs = pods.clone();
                async move {
                    let id = rs
                        .run_pod_sandbox(v1::RunPodSandboxRequest {
                            config: Some(config.clone()),
                            runtime_handler: String::new(),
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .pod_sandbox_id;
                    (id, config)
                }
            };
            let counter = |pod: &str, sandbox: &v1::PodSandboxConfig, img: &str, command: Vec<String>| {
                v1::CreateContainerRequest {
                    pod_sandbox_id: pod.to_owned(),
                    config: Some(v1::ContainerConfig {
                        metadata: Some(v1::ContainerMetadata {
                            name: "counter".into(),
                            attempt: 0,
                        }),
                        image: image(img),
                        command,
                        log_path: "counter/0.log".into(),
                        ..Default::default()
                    }),
                    sandbox_config: Some(sandbox.clone()),
                }
            };

            let (pod, sandbox) = run_pod("original").await;
            let script =
                "echo x > /marker; rm /bin/true; i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done";
            let command = vec!["sh".into(), "-c".into(), script.into()];
            let ctr = rs
                .create_container(counter(&pod, &sandbox, &busybox, command))
                .await
                .unwrap()
                .into_inner()
                .container_id;
            rs.start_container(v1::StartContainerRequest {
                container_id: ctr.clone(),
            })
            .await
            .unwrap();
            let before = wait_count(&b.dir.path().join("original/counter/0.log"), 5);
            rs.checkpoint_container(v1::CheckpointContainerRequest {
                container_id: ctr.clone(),
                location: archive.display().to_string(),
                timeout: 30,
            })
            .await
            .unwrap();
            // The original goes, so nothing but the restore can count on.
            rs.stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
            rs.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod })
                .await
                .unwrap();

            // kubelet's restore: a new pod, the archive's path as the image,
            // no command (the archive has it).
            let (pod, sandbox) = run_pod("restored").await;
            let archive_path = archive.display().to_string();
            let ctr = rs
                .create_container(counter(&pod, &sandbox, &archive_path, vec![]))
                .await
                .unwrap()
                .into_inner()
                .container_id;
            let status = |rs: &mut RuntimeServiceClient<Channel>, id: String| {
                let mut rs = rs.clone();
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
            let st = status(&mut rs, ctr.clone()).await;
            assert_eq!(st.state, v1::ContainerState::ContainerCreated as i32, "{st:?}");
            assert_eq!(st.image.as_ref().unwrap().image, busybox, "{st:?}");
            rs.start_container(v1::StartContainerRequest {
                container_id: ctr.clone(),
            })
            .await
            .unwrap();
            let st = status(&mut rs, ctr.clone()).await;
            assert_eq!(st.state, v1::ContainerState::ContainerRunning as i32, "{st:?}");
            assert!(st.started_at > 0, "{st:?}");

            // Its memory came back: the count goes on from the checkpoint.
            let log = b.dir.path().join("restored/counter/0.log");
            wait_count(&log, before + 5);
            let seen = counts(&log);
            eprintln!("checkpointed after {before}, the restored counter went on at {seen:?}");
            assert!(
                seen[0] > before,
                "restored counter started at {} (checkpointed after {before}): {seen:?}",
                seen[0]
            );
            assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
            // And its file system: the marker it wrote, the file it deleted.
            let exec = rs
                .exec_sync(v1::ExecSyncRequest {
                    container_id: ctr.clone(),
                    cmd: vec![
                        "sh".into(),
                        "-c".into(),
                        "cat /marker; test -e /bin/true || echo gone".into(),
                    ],
                    timeout: 10,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(String::from_utf8_lossy(&exec.stdout), "x\ngone\n", "{exec:?}");
            // And its device rules (v1's controller, v2's filter restore
            // attaches): an allowed device opens, any other does not (fuse:
            // its open needs no capability and does nothing).
            let exec = rs
                .exec_sync(v1::ExecSyncRequest {
                    container_id: ctr.clone(),
                    cmd: vec![
                        "sh".into(),
                        "-c".into(),
                        "mknod /dev/test-null c 1 3 && (exec 3>/dev/test-null) && echo allowed; \
                         mknod /dev/test-fuse c 10 229 && (exec 3</dev/test-fuse) 2>&1 | grep -q 'not permitted' && echo refused"
                            .into(),
                    ],
                    timeout: 10,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(String::from_utf8_lossy(&exec.stdout), "allowed\nrefused\n", "{exec:?}");

            rs.stop_container(v1::StopContainerRequest {
                container_id: ctr.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
            let st = status(&mut rs, ctr.clone()).await;
            assert_eq!(st.state, v1::ContainerState::ContainerExited as i32, "{st:?}");
            rs.stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
            rs.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: pod })
                .await
                .unwrap();
        });
}
