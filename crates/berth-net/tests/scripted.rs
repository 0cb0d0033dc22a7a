//! The protocol as plugins see it, with shell-script plugins that record
//! what they were given; config dir selection; STATUS; timeouts.

mod common;

use std::path::Path;
use std::time::Duration;

use berth_net::{Attachment, Capabilities, CniError, NetworkList, PortMapping};
use common::*;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A plugin that saves its stdin per command, logs each call, and on ADD
/// prints `result`.
fn recorder(dirs: &Dirs, name: &str, result: &Value) {
    let rec = dirs.root.path();
    dirs.script(
        name,
        &format!(
            r#"cat > {rec}/$CNI_COMMAND-{name}.json
echo "$CNI_COMMAND {name} netns=$CNI_NETNS args=$CNI_ARGS" >> {rec}/log
if [ "$CNI_COMMAND" = ADD ]; then printf '%s' '{result}'; fi"#,
            rec = rec.display(),
        ),
    );
}

fn recorded(dirs: &Dirs, file: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dirs.root.path().join(file)).unwrap()).unwrap()
}

fn log(dirs: &Dirs) -> Vec<String> {
    std::fs::read_to_string(dirs.root.path().join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn chains_prev_result_and_dels_in_reverse_with_cached_result() {
    let dirs = Dirs::new();
    let netns_file = dirs.root.path().join("netns");
    std::fs::write(&netns_file, b"").unwrap();
    let ns = netns_file.to_str().unwrap();
    let first = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": ns}],
        "ips": [{"address": "10.9.0.5/24", "interface": 0}]});
    let second = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": ns}],
        "ips": [{"address": "fd00::5/64", "interface": 0}, {"address": "10.9.0.5/24", "interface": 0}]});
    recorder(&dirs, "rec-a", &first);
    recorder(&dirs, "rec-b", &second);
    let list = json!({"cniVersion": "1.0.0", "name": "chain", "plugins": [
        {"type": "rec-a", "capabilities": {"mac": true}},
        {"type": "rec-b", "capabilities": {"portMappings": true}, "runtimeConfig": {"keep": 1}}
    ]});
    std::fs::write(dirs.conf.join("10-chain.conflist"), list.to_string()).unwrap();
    let cni = dirs.cni(TIMEOUT);
    let net = cni.network("chain").unwrap();
    let att = Attachment {
        container_id: "pod1".into(),
        netns: netns_file.clone(),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAME".into(), "web".into())],
        capabilities: Capabilities {
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: "127.0.0.1".into(),
            }],
            ..Default::default()
        },
    };

    let result = cni.add(&net, &att).unwrap();
    assert_eq!(result.raw(), &second);
    let pod_ips: Vec<String> = result.pod_ips().iter().map(|i| i.to_string()).collect();
    assert_eq!(pod_ips, vec!["10.9.0.5", "fd00::5"]);

    let add_a = recorded(&dirs, "ADD-rec-a.json");
    assert_eq!(
        (add_a["name"].as_str(), add_a["cniVersion"].as_str()),
        (Some("chain"), Some("1.0.0"))
    );
    assert!(add_a.get("prevResult").is_none());
    assert!(
        add_a.get("runtimeConfig").is_none(),
        "mac declared but not offered: {add_a}"
    );
    let add_b = recorded(&dirs, "ADD-rec-b.json");
    assert_eq!(add_b["prevResult"], first);
    assert_eq!(add_b["runtimeConfig"]["keep"], 1);
    assert_eq!(add_b["runtimeConfig"]["portMappings"][0]["hostIP"], "127.0.0.1");
    assert_eq!(add_b["runtimeConfig"]["portMappings"][0]["containerPort"], 80);

    // The netns is gone and the config changed: DEL still runs what ADD ran.
    std::fs::remove_file(&netns_file).unwrap();
    std::fs::remove_file(dirs.conf.join("10-chain.conflist")).unwrap();
    cni.del(&att.key("chain")).unwrap();
    for name in ["rec-a", "rec-b"] {
        let del = recorded(&dirs, &format!("DEL-{name}.json"));
        assert_eq!(del["prevResult"], second, "{name} DEL");
    }
    assert_eq!(
        log(&dirs),
        vec![
            "ADD rec-a netns=NS args=IgnoreUnknown=1;K8S_POD_NAME=web".replace("NS", ns),
            "ADD rec-b netns=NS args=IgnoreUnknown=1;K8S_POD_NAME=web".replace("NS", ns),
            "DEL rec-b netns= args=IgnoreUnknown=1;K8S_POD_NAME=web".into(),
            "DEL rec-a netns= args=IgnoreUnknown=1;K8S_POD_NAME=web".into(),
        ]
    );
    assert!(!dirs.cache.join("results/chain-pod1-eth0.json").exists());

    // Nothing cached and no such network: DEL is a no-op success.
    cni.del(&att.key("chain")).unwrap();
    assert_eq!(log(&dirs).len(), 4);
    // Nothing cached but the network exists: DEL runs it without prevResult.
    std::fs::write(dirs.conf.join("10-chain.conflist"), list.to_string()).unwrap();
    cni.del(&att.key("chain")).unwrap();
    assert_eq!(log(&dirs).len(), 6);
    assert!(recorded(&dirs, "DEL-rec-a.json").get("prevResult").is_none());
}

#[test]
fn conf_dir_selection_and_malformed_files() {
    let dirs = Dirs::new();
    let d2 = dirs.root.path().join("d2");
    let d3 = dirs.root.path().join("d3");
    std::fs::create_dir(&d2).unwrap();
    std::fs::create_dir(&d3).unwrap();
    let conf = |name: &str| json!({"cniVersion": "0.4.0", "name": name, "type": "bridge"}).to_string();
    let list = |name: &str| {
        json!({"cniVersion": "1.0.0", "name": name, "plugins": [{"type": "bridge"}]}).to_string()
    };
    std::fs::write(d2.join("20-b.conf"), conf("b-net")).unwrap();
    std::fs::write(d2.join("10-a.conflist"), list("a-net")).unwrap();
    std::fs::write(d2.join("30-c.json"), conf("c-net")).unwrap();
    std::fs::write(d2.join("00-notes.txt"), "not a config").unwrap();
    std::fs::write(d3.join("00-z.conflist"), list("z-net")).unwrap();
    let cni = berth_net::Cni::new(berth_net::CniConfig {
        conf_dirs: vec![dirs.root.path().join("missing"), d2.clone(), d3.clone()],
        ..Default::default()
    });

    let default = cni.default_network().unwrap();
    assert_eq!(
        (default.name.as_str(), default.source.as_path()),
        ("a-net", d2.join("10-a.conflist").as_path())
    );
    let names: Vec<String> = cni.networks().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, vec!["a-net", "b-net", "c-net", "z-net"]);
    let c = cni.network("c-net").unwrap();
    assert_eq!((c.cni_version.as_str(), c.plugins.len()), ("0.4.0", 1));
    assert!(matches!(
        cni.network("nope"),
        Err(CniError::NetworkNotFound { .. })
    ));

    let bad = d2.join("01-bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let names_file = |e: CniError| {
        let text = e.to_string();
        assert!(text.contains(bad.to_str().unwrap()), "{text}");
    };
    names_file(cni.default_network().unwrap_err());
    names_file(cni.networks().unwrap_err());
    names_file(cni.network("nope").unwrap_err());
    assert_eq!(cni.network("z-net").unwrap().name, "z-net");

    std::fs::write(
        &bad,
        json!({"cniVersion": "1.0.0", "name": "x", "plugins": []}).to_string(),
    )
    .unwrap();
    let text = cni.default_network().unwrap_err().to_string();
    assert!(text.contains("01-bad.json") && text.contains("plugins"), "{text}");
}

#[test]
fn hanging_plugin_is_killed_at_the_timeout() {
    let dirs = Dirs::new();
    let pid_file = dirs.root.path().join("sleep.pid");
    dirs.script(
        "hang",
        &format!("sleep 600 &\necho $! > {}\nwait", pid_file.display()),
    );
    let cni = dirs.cni(Duration::from_secs(1));
    let err = cni.version("hang").unwrap_err();
    assert!(
        matches!(&err, CniError::Timeout { plugin, .. } if plugin == "hang"),
        "{err}"
    );
    assert!(err.to_string().contains("\"hang\""), "{err}");

    // The plugin's helper (its process group) was killed too.
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    assert!(wait_gone(&pid), "sleep {pid} outlived the plugin");
}

/// Whether the process exits (or is a zombie) within a few seconds: a
/// SIGKILLed process is gone as soon as the kernel schedules it.
fn wait_gone(pid: &str) -> bool {
    let stat = Path::new("/proc").join(pid).join("stat");
    for _ in 0..200 {
        match std::fs::read_to_string(&stat) {
            Err(_) => return true,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
    false
}

#[test]
fn status_asks_only_plugins_that_speak_1_1() {
    let dirs = Dirs::new();
    let log = dirs.root.path().join("log");
    let plugin = |name: &str, status_body: &str| {
        dirs.script(
            name,
            &format!(
                r#"cat >/dev/null
case "$CNI_COMMAND" in
VERSION) printf '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}';;
STATUS) echo "STATUS {name}" >> {log}; {status_body};;
esac"#,
                log = log.display()
            ),
        );
    };
    plugin("ready", "exit 0");
    plugin(
        "old-skel",
        r#"printf '{"code":4,"msg":"unknown CNI_COMMAND: STATUS"}'; exit 1"#,
    );
    plugin(
        "not-ready",
        r#"printf '{"code":50,"msg":"no addresses left"}'; exit 1"#,
    );
    let cni = dirs.cni(TIMEOUT);
    let net = |version: &str, types: &[&str]| {
        let plugins: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        NetworkList::from_value(
            json!({"cniVersion": version, "name": "s", "plugins": plugins}),
            "inline".into(),
        )
        .unwrap()
    };

    // bridge 1.1.1 supports no 1.1 version: not asked, counts as ready.
    cni.status(&net("1.1.0", &["bridge", "ready", "old-skel"]))
        .unwrap();
    let asked = std::fs::read_to_string(&log).unwrap();
    assert_eq!(asked, "STATUS ready\nSTATUS old-skel\n");

    let err = cni.status(&net("1.1.0", &["ready", "not-ready"])).unwrap_err();
    assert_eq!(err.plugin(), Some("not-ready"));
    assert_eq!(err.plugin_error().map(|b| b.code), Some(50), "{err}");
    assert!(err.to_string().contains("no addresses left"), "{err}");

    // A 1.0 list cannot be asked.
    cni.status(&net("1.0.0", &["not-ready"])).unwrap();
}

/// Input and output larger than a pipe holds: a plugin that never reads its
/// config (more than the pipe buffer) and writes 256 KiB to stderr before
/// answering still gets through, with all its output collected; one that
/// fails has its stderr in the error whole.
#[test]
fn big_config_unread_and_big_output_do_not_block() {
    let dirs = Dirs::new();
    let netns_file = dirs.root.path().join("netns");
    std::fs::write(&netns_file, b"").unwrap();
    let result = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.7/24"}]});
    dirs.script(
        "flood",
        &format!(
            r#"head -c 262144 /dev/zero | tr '\0' e >&2
if [ "$CNI_COMMAND" = ADD ]; then head -c 200000 /dev/zero | tr '\0' ' '; printf '%s' '{result}'; fi"#
        ),
    );
    dirs.script(
        "fail",
        r#"head -c 262144 /dev/zero | tr '\0' f >&2; echo last-line >&2; exit 3"#,
    );
    let pad = "p".repeat(300_000);
    let list = |plugin: &str| json!({"cniVersion": "1.0.0", "name": plugin, "plugins": [{"type": plugin, "pad": pad}]});
    for name in ["flood", "fail"] {
        std::fs::write(
            dirs.conf.join(format!("10-{name}.conflist")),
            list(name).to_string(),
        )
        .unwrap();
    }
    let cni = dirs.cni(TIMEOUT);
    let att = Attachment {
        container_id: "pod1".into(),
        netns: netns_file.clone(),
        ifname: "eth0".into(),
        args: vec![],
        capabilities: Capabilities::default(),
    };

    let net = cni.network("flood").unwrap();
    let got = cni.add(&net, &att).unwrap();
    assert_eq!(got.raw(), &result);
    cni.del(&att.key("flood")).unwrap();

    let net = cni.network("fail").unwrap();
    let err = cni.add(&net, &att).unwrap_err();
    let CniError::Plugin { failure, .. } = &err else {
        panic!("not a plugin failure: {err}");
    };
    assert_eq!(failure.status, "exit status 3");
    assert_eq!(failure.stderr.len(), 262144 + "last-line\n".len());
    assert!(failure.stderr.ends_with("last-line\n"));
}
