//! Pods from the command line, with no daemon: run, ps, logs, exec, stop,
//! rm, stats, gc, Pod manifests. Real containers; every test checks it left
//! no mount, cgroup or process behind.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{Berth, registry};

fn busybox() -> String {
    format!("{}/busybox:latest", registry())
}

/// A berth whose default runtime handler is `handler`.
fn berth_on(handler: &str) -> Berth {
    Berth::with_config(&format!("default_runtime = \"{handler}\""))
}

fn assert_clean(b: &Berth) {
    let left = b.leftovers();
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
}

/// Every test runs on the embedded handler (`berth oci`) and on runc.
macro_rules! on_each_handler {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn embedded() {
                    super::$name("berth");
                }
                #[test]
                fn runc() {
                    super::$name("runc");
                }
            }
        )*
    };
}

on_each_handler!(
    run_prints_output_and_exits_with_the_apps_code,
    detached_pod_runs_logs_in_order_stops_and_reports_its_exit,
    stop_kills_an_app_that_ignores_the_stop_signal_after_the_grace_period,
    memory_limit_oom_kills_and_is_reported,
    memory_limit_means_no_swap_unless_memory_swap_says_so,
    pids_limit_holds,
    apps_of_a_pod_share_ipc_and_uts_but_not_mount_namespaces,
    exec_returns_the_exit_code_and_runs_with_a_tty,
    stats_report_the_apps_cgroup_usage,
    user_env_workdir_mounts_and_read_only_rootfs,
    secure_defaults_capabilities_seccomp_and_no_new_privs,
    pod_manifest_runs_init_containers_then_apps_with_volumes,
    bad_input_is_refused_naming_the_bad_part_and_keeps_what_exists,
    shared_pid_namespace_has_berths_init_as_pid_1,
    gc_removes_exited_pods_after_the_grace_period_only,
    interactive_run_takes_stdin_with_and_without_a_tty,
    logs_follow_until_the_app_exits,
    logs_tail_of_an_app_that_writes_forever_ends,
    sigterm_to_a_foreground_run_stops_the_pod_gracefully,
);

fn run_prints_output_and_exits_with_the_apps_code(handler: &str) {
    let b = berth_on(handler);
    let out = b.cmd(
        "default",
        &[
            "run",
            "--rm",
            "-q",
            &busybox(),
            "--",
            "sh",
            "-c",
            "echo hi; echo oops >&2; exit 3",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));
    assert!(b.ok("default", &["ps", "-q"]).is_empty(), "--rm removed the pod");
    assert_clean(&b);
}

fn detached_pod_runs_logs_in_order_stops_and_reports_its_exit(handler: &str) {
    let b = berth_on(handler);
    let id = b
        .ok(
            "default",
            &[
                "run",
                "-d",
                "--name",
                "ticker",
                &busybox(),
                "--",
                "sh",
                "-c",
                "trap 'echo bye; exit 7' TERM; for i in 1 2 3 4 5; do echo line $i; done; while true; do sleep 0.1; done",
            ],
        )
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    // The CLI that started it has exited; the pod still runs.
    let ps = b.json("default", &["ps", "--json"]);
    assert_eq!(ps[0]["state"], "running", "{ps}");
    assert_eq!(ps[0]["name"], "ticker");
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let l = b.ok("default", &["logs", "ticker"]);
        if l.lines().count() >= 5 || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(logs, "line 1\nline 2\nline 3\nline 4\nline 5\n");
    let t0 = Instant::now();
    b.ok("default", &["stop", "-t", "5", &id[..12]]);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stop waited the whole grace period"
    );
    let ps = b.json("default", &["ps", "--json"]);
    assert_eq!(ps[0]["state"], "exited", "{ps}");
    assert_eq!(ps[0]["exit_code"], 7, "{ps}");
    assert!(b.ok("default", &["ps"]).contains("exited (7)"));
    assert!(b.ok("default", &["logs", "ticker"]).ends_with("bye\n"));
    b.ok("default", &["rm", "ticker"]);
    assert_eq!(b.json("default", &["ps", "--json"]), serde_json::json!([]));
    assert_clean(&b);
}

fn stop_kills_an_app_that_ignores_the_stop_signal_after_the_grace_period(handler: &str) {
    let b = berth_on(handler);
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "stubborn",
            &busybox(),
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo up; while true; do sleep 1; done",
        ],
    );
    let t0 = Instant::now();
    b.ok("default", &["stop", "-t", "1", "stubborn"]);
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let st = b.json("default", &["status", "--json", "stubborn"]);
    assert_eq!(st["apps"][0]["exit_code"], 137, "{st}");
    b.ok("default", &["rm", "stubborn"]);
    assert_clean(&b);
}

fn memory_limit_oom_kills_and_is_reported(handler: &str) {
    let b = berth_on(handler);
    // Grow a shell variable until the 16 MiB limit is hit.
    let out = b.cmd(
        "default",
        &[
            "run",
            "--name",
            "hog",
            "-q",
            "--memory",
            "16m",
            &busybox(),
            "--",
            "sh",
            "-c",
            "x=0123456789abcdef; while true; do x=$x$x; done",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = b.json("default", &["status", "--json", "hog"]);
    assert_eq!(st["apps"][0]["reason"], "OOMKilled", "{st}");
    b.ok("default", &["rm", "hog"]);
    assert_clean(&b);
}

/// The files of the cgroups below `b`'s parent whose memory limit is
/// `limit`: (memory+swap on v1, `memory.swap.max` on v2), one per app.
fn swap_of_apps_limited_to(b: &Berth, limit: u64) -> Vec<String> {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (root, limit_file, swap_file) = if v2 {
        ("/sys/fs/cgroup", "memory.max", "memory.swap.max")
    } else {
        (
            "/sys/fs/cgroup/memory",
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
        )
    };
    let mut found = Vec::new();
    let mut dirs = vec![std::path::Path::new(root).join(b.cgroup_parent().trim_start_matches('/'))];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            }
        }
        let read = |f: &str| std::fs::read_to_string(d.join(f)).map(|s| s.trim().to_string());
        if read(limit_file).is_ok_and(|l| l == limit.to_string()) {
            found.push(read(swap_file).unwrap_or_else(|e| format!("{swap_file}: {e}")));
        }
    }
    found
}

fn memory_limit_means_no_swap_unless_memory_swap_says_so(handler: &str) {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let accounting = if v2 {
        // Any cgroup but the root has the file when the kernel accounts swap.
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .any(|e| e.path().join("memory.swap.max").exists())
    } else {
        std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
    };
    if !accounting {
        eprintln!("this host does not account swap per cgroup: nothing to check");
        return;
    }
    let b = berth_on(handler);
    let limit: u64 = 32 << 20;
    // (flags, what memory+swap (v1) and memory.swap.max (v2) must say)
    let cases: [(&[&str], &str, &str); 3] = [
        (&[], "33554432", "0"),
        (&["--memory-swap", "48m"], "50331648", "16777216"),
        (&["--memory-swap", "-1"], "9223372036854771712", "max"),
    ];
    for (flags, v1_want, v2_want) in cases {
        let mut args = vec!["run", "-d", "--name", "swapless", "--memory", "32m"];
        args.extend_from_slice(flags);
        let busybox = busybox();
        args.extend_from_slice(&[&busybox, "--", "sleep", "1000"]);
        b.ok("default", &args);
        let want = if v2 { v2_want } else { v1_want };
        assert_eq!(
            swap_of_apps_limited_to(&b, limit),
            [want],
            "{flags:?} on {handler}"
        );
        b.ok("default", &["rm", "-f", "swapless"]);
    }
    // Refused, naming the flag.
    let err = b.fails(
        "default",
        &[
            "run",
            "--memory",
            "32m",
            "--memory-swap",
            "16m",
            &busybox(),
            "--",
            "true",
        ],
    );
    assert!(err.contains("--memory-swap 16m"), "{err}");
    assert_clean(&b);
}

fn pids_limit_holds(handler: &str) {
    let b = berth_on(handler);
    let out = b.cmd(
        "default",
        &[
            "run",
            "--rm",
            "-q",
            "--pids-limit",
            "8",
            &busybox(),
            "--",
            "sh",
            "-c",
            "n=0; for i in $(seq 1 30); do sleep 5 & n=$((n+1)); done; echo started; exit 0",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // fork fails once the limit is reached: the shell reports it.
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "stderr: {err}"
    );
    assert_clean(&b);
}

fn apps_of_a_pod_share_ipc_and_uts_but_not_mount_namespaces(handler: &str) {
    let b = berth_on(handler);
    let img = busybox();
    let args = ["sh", "-c", "while true; do sleep 1; done"];
    let mut cmd = vec![
        "run",
        "-d",
        "--name",
        "pair",
        "--hostname",
        "pairhost",
        "--app",
        &img,
        "--app",
        &img,
        "--",
    ];
    cmd.extend(args);
    b.ok("default", &cmd);
    let st = b.json("default", &["status", "--json", "pair"]);
    let apps = st["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 2, "{st}");
    let ns_of = |app: &str, kind: &str| {
        b.ok(
            "default",
            &[
                "exec",
                "--app",
                app,
                "pair",
                "--",
                "readlink",
                &format!("/proc/self/ns/{kind}"),
            ],
        )
    };
    let (a, c) = (
        apps[0]["name"].as_str().unwrap(),
        apps[1]["name"].as_str().unwrap(),
    );
    assert_eq!(ns_of(a, "ipc"), ns_of(c, "ipc"));
    assert_eq!(ns_of(a, "uts"), ns_of(c, "uts"));
    assert_eq!(ns_of(a, "net"), ns_of(c, "net"));
    assert_ne!(ns_of(a, "mnt"), ns_of(c, "mnt"));
    assert_eq!(
        b.ok("default", &["exec", "--app", c, "pair", "--", "hostname"]),
        "pairhost\n"
    );
    // A file written in one app's root filesystem is not in the other's.
    b.ok(
        "default",
        &["exec", "--app", a, "pair", "--", "touch", "/only-here"],
    );
    let out = b.cmd("default", &["exec", "--app", c, "pair", "--", "ls", "/only-here"]);
    assert!(!out.status.success());
    b.ok("default", &["rm", "--force", "pair"]);
    assert_clean(&b);
}

fn exec_returns_the_exit_code_and_runs_with_a_tty(handler: &str) {
    let b = berth_on(handler);
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "box",
            &busybox(),
            "--",
            "sh",
            "-c",
            "while true; do sleep 1; done",
        ],
    );
    let out = b.cmd("default", &["exec", "box", "--", "sh", "-c", "echo in; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in\n");
    // With -t the process gets a terminal: `tty` names it and exits 0.
    let out = b.cmd("default", &["exec", "-t", "box", "--", "tty"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{:?}",
        out
    );
    let out = b.cmd("default", &["exec", "box", "--", "tty"]);
    assert_ne!(out.status.code(), Some(0), "no tty without -t");
    b.ok("default", &["rm", "--force", "box"]);
    assert_clean(&b);
}

fn stats_report_the_apps_cgroup_usage(handler: &str) {
    let b = berth_on(handler);
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "busy",
            &busybox(),
            "--",
            "sh",
            "-c",
            "sleep 60 & sleep 60 & while true; do :; done",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let s = b.json("default", &["stats", "--json", "busy"]);
    let row = &s[0];
    assert!(row["cpu_usage_ns"].as_u64().unwrap() > 0, "{s}");
    assert!(row["memory_working_set"].as_u64().unwrap() > 0, "{s}");
    assert!(row["pids_current"].as_u64().unwrap() >= 3, "{s}");
    b.ok("default", &["rm", "--force", "busy"]);
    assert_clean(&b);
}

fn user_env_workdir_mounts_and_read_only_rootfs(handler: &str) {
    let b = berth_on(handler);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from host").unwrap();
    let mount = format!("{}:/data:ro", host.path().display());
    let out = b.ok(
        "default",
        &[
            "run", "--rm", "-q", "--user", "1000:1000", "-e", "GREETING=hello", "-w", "/tmp", "--mount", &mount,
            "--read-only", "--mount", "type=tmpfs,dst=/tmp", &busybox(), "--", "sh", "-c",
            "id -u; id -g; echo $GREETING; pwd; cat /data/in.txt; echo; touch /x 2>/dev/null || echo ro; touch /data/y 2>/dev/null || echo data-ro; touch /tmp/z && echo tmp-rw",
        ],
    );
    assert_eq!(out, "1000\n1000\nhello\n/tmp\nfrom host\nro\ndata-ro\ntmp-rw\n");
    assert_clean(&b);
}

fn secure_defaults_capabilities_seccomp_and_no_new_privs(handler: &str) {
    let b = berth_on(handler);
    let out = b.ok(
        "default",
        &[
            "run",
            "--rm",
            "-q",
            &busybox(),
            "--",
            "sh",
            "-c",
            "grep -E '^(CapEff|Seccomp):' /proc/self/status",
        ],
    );
    // containerd's default capability set.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    let out = b.ok(
        "default",
        &[
            "run",
            "--rm",
            "-q",
            "--cap-drop",
            "ALL",
            &busybox(),
            "--",
            "sh",
            "-c",
            "grep CapEff /proc/self/status",
        ],
    );
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    // A process exec'd into the container is under the same filter, with the
    // same capabilities.
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "-q",
            "--name",
            "filtered",
            &busybox(),
            "--",
            "sleep",
            "1000",
        ],
    );
    let out = b.ok(
        "default",
        &[
            "exec",
            "filtered",
            "--",
            "grep",
            "-E",
            "^(CapEff|Seccomp):",
            "/proc/self/status",
        ],
    );
    assert!(out.contains("Seccomp:\t2"), "exec'd process: {out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "exec'd process: {out}");
    // The filter blocks what it must in the exec'd process too.
    let out = b.cmd("default", &["exec", "filtered", "--", "unshare", "-U", "true"]);
    assert!(
        !out.status.success(),
        "unshare -U in an exec'd process was allowed"
    );
    b.ok("default", &["rm", "-f", "filtered"]);
    assert_clean(&b);
}

fn pod_manifest_runs_init_containers_then_apps_with_volumes(handler: &str) {
    let b = berth_on(handler);
    let host = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  initContainers:
  - name: seed
    image: {img}
    command: ["sh", "-c", "echo seeded > /work/seed"]
    volumeMounts:
    - name: scratch
      mountPath: /work
  containers:
  - name: main
    image: {img}
    command: ["sh", "-c"]
    args: ["cat /work/seed; cat /host/note; echo $MODE; id -u"]
    env:
    - name: MODE
      value: manifest
    securityContext:
      runAsUser: 1234
    resources:
      limits:
        memory: 64Mi
    volumeMounts:
    - name: scratch
      mountPath: /work
    - name: hostdir
      mountPath: /host
      readOnly: true
  volumes:
  - name: scratch
    emptyDir: {{}}
  - name: hostdir
    hostPath:
      path: {host}
"#,
        img = busybox(),
        host = host.path().display()
    );
    std::fs::write(host.path().join("note"), "from the host\n").unwrap();
    let file = b.dir.path().join("pod.yaml");
    std::fs::write(&file, manifest).unwrap();
    let out = b.ok("default", &["run", "-q", "-f", file.to_str().unwrap()]);
    assert_eq!(out, "seeded\nfrom the host\nmanifest\n1234\n");
    let st = b.json("default", &["status", "--json", "web"]);
    assert_eq!(st["state"], "exited", "{st}");
    assert_eq!(st["apps"].as_array().unwrap().len(), 2);
    b.ok("default", &["rm", "web"]);
    assert_clean(&b);
}

fn bad_input_is_refused_naming_the_bad_part_and_keeps_what_exists(handler: &str) {
    let b = berth_on(handler);
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "keep",
            &busybox(),
            "--",
            "sh",
            "-c",
            "while true; do sleep 1; done",
        ],
    );
    let err = b.fails(
        "default",
        &["run", "-d", "--name", "keep", &busybox(), "--", "true"],
    );
    assert!(err.contains("\"keep\"") && err.contains("taken"), "{err}");
    let err = b.fails("default", &["run", "--name", "Bad_Name", &busybox()]);
    assert!(err.contains("\"Bad_Name\""), "{err}");
    let err = b.fails("default", &["run", "--memory", "12q", &busybox()]);
    assert!(err.contains("--memory") && err.contains("\"q\""), "{err}");
    let err = b.fails(
        "default",
        &["run", "--user", "nosuchuser", &busybox(), "--", "true"],
    );
    assert!(err.contains("nosuchuser"), "{err}");
    let err = b.fails(
        "default",
        &["run", "--runtime", "nosuch", &busybox(), "--", "true"],
    );
    assert!(err.contains("\"nosuch\""), "{err}");
    let err = b.fails("default", &["run", &busybox(), "--", "/no/such/binary"]);
    assert!(err.contains("/no/such/binary"), "{err}");
    let err = b.fails("default", &["rm", "keep"]);
    assert!(err.contains("running"), "{err}");
    // Failed runs left nothing, and the first pod is untouched.
    let ps = b.json("default", &["ps", "--json"]);
    assert_eq!(ps.as_array().unwrap().len(), 1, "{ps}");
    assert_eq!(ps[0]["state"], "running");
    b.ok("default", &["rm", "--force", "keep"]);
    assert_clean(&b);
}

fn shared_pid_namespace_has_berths_init_as_pid_1(handler: &str) {
    let b = berth_on(handler);
    let img = busybox();
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--share-pid",
            "--name",
            "pids",
            "--app",
            &img,
            "--app",
            &img,
            "--",
            "sh",
            "-c",
            "while true; do sleep 1; done",
        ],
    );
    let st = b.json("default", &["status", "--json", "pids"]);
    let second = st["apps"][1]["name"].as_str().unwrap().to_string();
    let ps = b.ok(
        "default",
        &["exec", "--app", &second, "pids", "--", "ps", "-o", "pid,args"],
    );
    // Both apps' shells are visible from one of them, and pid 1 is not theirs.
    assert!(ps.matches("while true").count() >= 2, "{ps}");
    let pid1 = ps
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_default()
        .to_string();
    assert!(!pid1.contains("while true"), "{ps}");
    b.ok("default", &["rm", "--force", "pids"]);
    assert_clean(&b);
}

fn gc_removes_exited_pods_after_the_grace_period_only(handler: &str) {
    let b = berth_on(handler);
    b.ok(
        "default",
        &["run", "-q", "--name", "done", &busybox(), "--", "true"],
    );
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "alive",
            &busybox(),
            "--",
            "sh",
            "-c",
            "while true; do sleep 1; done",
        ],
    );
    let out = b.json("default", &["gc", "--json", "--grace", "1h"]);
    assert_eq!(out["pods_removed"], 0, "{out}");
    let out = b.json("default", &["gc", "--json", "--grace", "0s"]);
    assert_eq!(out["pods_removed"], 1, "{out}");
    let ps = b.json("default", &["ps", "--json"]);
    assert_eq!(ps.as_array().unwrap().len(), 1);
    assert_eq!(ps[0]["name"], "alive");
    b.ok("default", &["rm", "--force", "alive"]);
    assert_clean(&b);
}

fn interactive_run_takes_stdin_with_and_without_a_tty(handler: &str) {
    use std::io::Write;
    let b = berth_on(handler);
    for tty in [false, true] {
        let flag = if tty { "-it" } else { "-i" };
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--config")
            .arg(&b.config)
            .args([
                "run",
                "--rm",
                "-q",
                flag,
                &busybox(),
                "--",
                "sh",
                "-c",
                "echo ready; read x; echo got $x; [ -t 0 ] && echo tty; exit 4",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        assert_eq!(
            out.status.code(),
            Some(4),
            "{flag}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The output written before stdin arrived was not lost (a tty also
        // echoes the input, possibly before it).
        assert!(
            stdout.starts_with("ready\n") || tty && stdout.contains("ready\n"),
            "{flag}: {stdout:?}"
        );
        assert!(stdout.contains("got hello\n"), "{flag}: {stdout:?}");
        assert_eq!(stdout.contains("tty\n"), tty, "{flag}: {stdout:?}");
    }
    assert_clean(&b);
}

fn logs_follow_until_the_app_exits(handler: &str) {
    let b = berth_on(handler);
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "slow",
            &busybox(),
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4; do echo tick $i; echo warn $i >&2; sleep 0.2; done",
        ],
    );
    // Started while the app still writes: returns once it exited, with all of it.
    let out = b.cmd("default", &["logs", "-f", "slow"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tick 1\ntick 2\ntick 3\ntick 4\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "warn 1\nwarn 2\nwarn 3\nwarn 4\n"
    );
    let st = b.json("default", &["status", "--json", "slow"]);
    assert_eq!(st["apps"][0]["exit_code"], 0, "{st}");
    // The last two messages: one on each stream.
    let out = b.cmd("default", &["logs", "--tail", "2", "slow"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tick 4\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "warn 4\n");
    b.ok("default", &["rm", "slow"]);
    assert_clean(&b);
}

/// Waits for `child` at most `limit`; kills it (by its pid) and fails when
/// it is still running then.
fn wait_or_kill(mut child: std::process::Child, limit: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + limit;
    // Drain the pipes meanwhile, so a full pipe cannot hold the child.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn logs_tail_of_an_app_that_writes_forever_ends(handler: &str) {
    let b = berth_on(handler);
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "flood",
            &busybox(),
            "--",
            "sh",
            "-c",
            "while :; do echo line; done",
        ],
    );
    // `run -d` returns once the app started; a second of it is megabytes of
    // log, many blocks of reading backwards.
    std::thread::sleep(Duration::from_secs(1));
    // The last 20 lines as of its start, then the end, however fast the
    // app goes on writing. The bound is only there to fail rather than
    // hang.
    let child = b.spawn("default", &["logs", "--tail", "20", "flood"]);
    let out = wait_or_kill(child, Duration::from_secs(60), "berth logs --tail 20");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line\n".repeat(20));
    // Without --tail too: everything up to where it started, then the end.
    let child = b.spawn("default", &["logs", "flood"]);
    let out = wait_or_kill(child, Duration::from_secs(60), "berth logs");
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"line\nline\n") && out.stdout.ends_with(b"line\n"));
    b.ok("default", &["rm", "-f", "flood"]);
    assert_clean(&b);
}

fn sigterm_to_a_foreground_run_stops_the_pod_gracefully(handler: &str) {
    // As systemd stops a unit whose ExecStart is `berth run`.
    let b = berth_on(handler);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--config")
        .arg(&b.config)
        .args([
            "run",
            "-q",
            "--name",
            "unit",
            &busybox(),
            "--",
            "sh",
            "-c",
            "trap 'echo stopping; exit 9' TERM; echo up; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 3];
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"up\n");
    let t0 = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(9), "the app's own exit code");
    assert_eq!(rest, "stopping\n");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "graceful, not after the grace period"
    );
    let st = b.json("default", &["status", "--json", "unit"]);
    assert_eq!(st["state"], "exited", "{st}");
    b.ok("default", &["rm", "unit"]);
    assert_clean(&b);
}
