//! A layer download that breaks off midway resumes where it stopped: through
//! a proxy in front of the test registry that cuts the first long response.

mod common;

use common::{images, registry};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use berth_image::PullOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Flaky {
    /// Set once the one response has been cut.
    cut: AtomicBool,
    /// Requests that carried a Range header (as the registry saw them).
    ranged: AtomicUsize,
    /// Hide Range from the registry, as a server without range support would.
    strip_range: bool,
}

const CUT_AFTER: usize = 300_000;

async fn proxy(listener: TcpListener, upstream: String, flaky: Arc<Flaky>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let (upstream, flaky) = (upstream.clone(), flaky.clone());
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let f = flaky.clone();
            let up = tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    if let Some(i) = text.find("\r\nrange: bytes=") {
                        f.ranged.fetch_add(1, Ordering::SeqCst);
                        if f.strip_range {
                            buf[i + 2..i + 7].copy_from_slice(b"x-ran");
                        }
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut buf = vec![0u8; 16 << 10];
            let mut sent = 0;
            while let Ok(n) = sr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if sent + n > CUT_AFTER && !flaky.cut.swap(true, Ordering::SeqCst) {
                    // Forward part of it, then hang up mid-body.
                    let _ = cw.write_all(&buf[..CUT_AFTER.saturating_sub(sent).min(n)]).await;
                    break;
                }
                sent += n;
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            up.abort();
        });
    }
}

async fn pull_through_flaky_proxy(
    strip_range: bool,
) -> (Arc<Flaky>, berth_image::PullReport, tempfile::TempDir) {
    let reg = registry();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let flaky = Arc::new(Flaky {
        strip_range,
        ..Default::default()
    });
    let task = tokio::spawn(proxy(listener, reg, flaky.clone()));

    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("certs.d/flaky.test");
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!("server = \"http://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let (images, _) = images(dir.path());
    let ns = "default".parse().unwrap();
    let report = images
        .pull(&ns, "flaky.test/big:latest", &PullOptions::default())
        .await;
    task.abort();
    (flaky, report.unwrap(), dir)
}

fn check(report: &berth_image::PullReport, dir: &std::path::Path) {
    let want = berth_registry::Reference::parse(&format!("{}/big:latest", registry())).unwrap();
    let raw = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{want}"),
        ])
        .output()
        .unwrap()
        .stdout;
    use sha2::Digest as _;
    let digest = berth_api::Digest::from_sha256(&sha2::Sha256::digest(&raw).into());
    assert_eq!(report.image.digest, digest);
    assert_eq!(report.layers_fetched, 5);
    // every stored blob is verified content
    for e in std::fs::read_dir(dir.join("root/content/blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let hex = e.file_name().to_string_lossy().to_string();
        let got =
            berth_api::Digest::from_sha256(&sha2::Sha256::digest(std::fs::read(e.path()).unwrap()).into());
        assert_eq!(got.hex(), hex);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_download_resumes_with_a_range_request() {
    let (flaky, report, dir) = pull_through_flaky_proxy(false).await;
    assert!(flaky.cut.load(Ordering::SeqCst), "the proxy cut a response");
    assert_eq!(flaky.ranged.load(Ordering::SeqCst), 1, "one resume, by Range");
    check(&report, dir.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_works_when_the_server_ignores_range() {
    let (flaky, report, dir) = pull_through_flaky_proxy(true).await;
    assert!(flaky.cut.load(Ordering::SeqCst));
    assert_eq!(flaky.ranged.load(Ordering::SeqCst), 1);
    check(&report, dir.path());
}
