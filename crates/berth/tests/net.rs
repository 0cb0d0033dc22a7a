//! Pod networking with real CNI plugins (Debian's containernetworking-plugins
//! in /usr/lib/cni): each test writes a conflist of its own (its own bridge,
//! subnet and host-local store) into its berth's config dir.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Berth, registry};

fn busybox() -> String {
    format!("{}/busybox:latest", registry())
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u32::from_le_bytes(b)
}

/// A berth with a default network: bridge `bt<hex>` on a /24 of its own.
struct Net {
    b: Berth,
    bridge: String,
    subnet_prefix: String,
    ipam_dir: PathBuf,
    name: String,
}

impl Net {
    fn new(extra_plugin: Option<&str>) -> Net {
        let b = Berth::new();
        let r = rand_u32();
        let bridge = format!("bt{:06x}", r & 0xff_ffff);
        let subnet_prefix = format!("10.{}.{}", 200 + (r >> 24) % 50, (r >> 16) & 0xff);
        let ipam_dir = b.dir.path().join("ipam");
        let name = format!("net{:06x}", r & 0xff_ffff);
        let extra = extra_plugin
            .map(|p| format!(r#"{{ "type": "{p}" }},"#))
            .unwrap_or_default();
        let conflist = format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "{name}",
  "plugins": [
    {{
      "type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {{ "type": "host-local", "dataDir": "{ipam}", "ranges": [[{{ "subnet": "{subnet_prefix}.0/24" }}]],
                 "routes": [{{ "dst": "0.0.0.0/0" }}] }}
    }},
    {extra}
    {{ "type": "portmap", "capabilities": {{ "portMappings": true }} }}
  ]
}}"#,
            ipam = ipam_dir.display()
        );
        std::fs::create_dir_all(b.cni_dir()).unwrap();
        std::fs::create_dir_all(b.dir.path().join("cni-bin")).unwrap();
        std::fs::write(b.cni_dir().join("10-test.conflist"), conflist).unwrap();
        Net {
            b,
            bridge,
            subnet_prefix,
            ipam_dir,
            name,
        }
    }

    /// Veths enslaved to this network's bridge.
    fn ports(&self) -> String {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// IPs host-local holds for this network.
    fn reserved_ips(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam_dir.join(&self.name))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("10."))
            .collect()
    }

    fn pod_ip(&self, pod: &str) -> String {
        let st = self.b.json("default", &["status", "--json", pod]);
        st["ips"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no ip: {st}"))
            .to_string()
    }

    fn assert_released(&self) {
        assert_eq!(self.ports(), "", "veths left on {}", self.bridge);
        assert!(
            self.reserved_ips().is_empty(),
            "IPs still reserved: {:?}",
            self.reserved_ips()
        );
        let left = self.b.leftovers();
        assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.b.cleanup();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn http_get(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn wait_http(addr: &str) -> String {
    for _ in 0..100 {
        if let Ok(mut s) =
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200))
        {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut body = String::new();
            if s.read_to_string(&mut body).is_ok() && body.contains("200") {
                return body;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    http_get(addr)
}

const SERVE: &str = "echo hello-from-web > /var/www/index.html; exec httpd -f -p 8080 -h /var/www";

#[test]
fn two_pods_talk_by_ip_and_the_host_reaches_a_published_port() {
    let n = Net::new(None);
    let b = &n.b;
    let host_port = 20000 + (rand_u32() % 20000) as u16;
    let publish = format!("{host_port}:8080");
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &publish,
            &busybox(),
            "--",
            "sh",
            "-c",
            SERVE,
        ],
    );
    let ip = n.pod_ip("web");
    assert!(ip.starts_with(&format!("{}.", n.subnet_prefix)), "{ip}");
    // The pod's /etc/hosts names it with its IP.
    let hosts = b.ok("default", &["exec", "web", "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{ip}\tweb")), "{hosts}");
    // Another pod fetches from it by IP.
    let url = format!("http://{ip}:8080/");
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
            &format!("for i in $(seq 50); do wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1"),
        ],
    );
    assert_eq!(out, "hello-from-web\n");
    // The host reaches it through the published port (portmap's DNAT), on
    // the bridge's gateway address (an address of this host).
    let body = wait_http(&format!("{}.1:{host_port}", n.subnet_prefix));
    assert!(body.contains("hello-from-web"), "{body}");
    // And on loopback, as `curl localhost:PORT` would.
    let body = wait_http(&format!("127.0.0.1:{host_port}"));
    assert!(body.contains("hello-from-web"), "{body}");
    b.ok("default", &["rm", "--force", "web"]);
    n.assert_released();
}

#[test]
fn host_network_pod_sees_the_hosts_interfaces() {
    let n = Net::new(None);
    let b = &n.b;
    let out = b.ok(
        "default",
        &[
            "run",
            "--rm",
            "-q",
            "--net",
            "host",
            &busybox(),
            "--",
            "cat",
            "/proc/net/dev",
        ],
    );
    let host_ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for i in &host_ifaces {
        assert!(
            out.contains(&format!("{i}:")),
            "{i} missing from the pod's view:\n{out}"
        );
    }
    // Its own network namespace would have lo only (and eth0).
    let own = b.ok(
        "default",
        &[
            "run",
            "--rm",
            "-q",
            "--net",
            "none",
            &busybox(),
            "--",
            "cat",
            "/proc/net/dev",
        ],
    );
    assert_eq!(own.lines().filter(|l| l.contains(':')).count(), 1, "{own}");
    n.assert_released();
}

#[test]
fn a_plugin_failing_halfway_through_add_leaves_nothing() {
    let n = Net::new(Some("berth-test-fail"));
    let plugin = n.b.dir.path().join("cni-bin/berth-test-fail");
    // Fails ADD with an error JSON and a line on stderr; DEL succeeds.
    std::fs::write(
        &plugin,
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  echo 'plugin stderr: refusing' >&2\n  echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"no room at the inn\"}'\n  exit 1\nfi\nif [ \"$CNI_COMMAND\" = VERSION ]; then echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}'; fi\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err =
        n.b.fails("default", &["run", "--name", "doomed", &busybox(), "--", "true"]);
    assert!(
        err.contains("berth-test-fail") && err.contains("no room at the inn"),
        "{err}"
    );
    assert!(
        err.contains("refusing"),
        "the plugin's stderr is in the error: {err}"
    );
    assert_eq!(n.b.json("default", &["ps", "--json"]), serde_json::json!([]));
    // The bridge plugin's interface and address were taken back.
    n.assert_released();
}

#[test]
fn rm_releases_the_ip_the_veth_and_the_namespace_even_after_the_config_changed() {
    let n = Net::new(None);
    let b = &n.b;
    // The network by its name this time.
    b.ok(
        "default",
        &[
            "run",
            "-d",
            "--name",
            "idle",
            "--net",
            &n.name,
            &busybox(),
            "--",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(n.reserved_ips().len(), 1);
    let err = b.fails(
        "default",
        &["run", "--net", "no-such-net", &busybox(), "--", "true"],
    );
    assert!(err.contains("\"no-such-net\""), "{err}");
    assert!(!n.ports().is_empty(), "a veth on the bridge");
    // DEL must use what ADD used, not what the config dir says now.
    std::fs::remove_file(b.cni_dir().join("10-test.conflist")).unwrap();
    b.ok("default", &["rm", "--force", "idle"]);
    n.assert_released();
}

#[test]
fn dns_from_a_pod_manifest_and_ips_in_ps() {
    let n = Net::new(None);
    let b = &n.b;
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dns\nspec:\n  dnsConfig:\n    nameservers: [\"10.0.0.10\"]\n    searches: [\"svc.cluster.local\"]\n    options:\n    - name: ndots\n      value: \"5\"\n  containers:\n  - name: c\n    image: {}\n    command: [\"sleep\", \"1000\"]\n",
        busybox()
    );
    let file = b.dir.path().join("dns.yaml");
    std::fs::write(&file, manifest).unwrap();
    b.ok("default", &["run", "-d", "-f", file.to_str().unwrap()]);
    let resolv = b.ok("default", &["exec", "dns", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
    );
    let ps = b.json("default", &["ps", "--json"]);
    let ip = ps[0]["ips"][0].as_str().unwrap();
    assert!(ip.starts_with(&n.subnet_prefix), "{ps}");
    let inside = b.ok(
        "default",
        &["exec", "dns", "--", "ip", "-o", "-4", "addr", "show", "eth0"],
    );
    assert!(inside.contains(&format!("{ip}/24")), "{inside}");
    b.ok("default", &["rm", "--force", "dns"]);
    n.assert_released();
}
