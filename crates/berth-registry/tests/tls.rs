//! HTTPS registries: extra roots (`ca`) and `skip_verify` from hosts.toml,
//! HTTP/2 by ALPN, and a clear error for an untrusted certificate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_registry::{Client, Reference};
use common::*;

/// A CA and a leaf for 127.0.0.1 signed by it, made with the openssl CLI.
/// (A self-signed leaf would not do: webpki refuses CA certificates as
/// end entities.)
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl CLI");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (dir.join("ca.pem"), dir.join("leaf.pem"), dir.join("leaf.key"))
}

fn client_for(certs: &Path, host: &str, toml: &str) -> Client {
    let d = certs.join(host);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("hosts.toml"), toml).unwrap();
    Client::new(config(certs)).unwrap()
}

#[tokio::test]
async fn https_registry_with_ca_or_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let reg = Registry::start_with(Options {
        tls: Some((&cert, &key)),
        ..Options::default()
    })
    .await;
    let r: Reference = reg.reference("secure/app:v1");
    let data = bytes_of(100_000, 7);
    let (d, path) = write_blob(dir.path(), &data);

    // Trusted through `ca`, relative to the hosts.toml directory.
    let certs = dir.path().join("with-ca");
    std::fs::create_dir_all(certs.join(reg.host())).unwrap();
    std::fs::copy(&ca, certs.join(reg.host()).join("ca.pem")).unwrap();
    let client = client_for(
        &certs,
        &reg.host(),
        &format!("server = \"https://{}\"\nca = \"ca.pem\"\n", reg.host()),
    );
    client.push_blob(&r, &d, data.len() as u64, &path).await.unwrap();
    assert_eq!(read_blob(&client, &r, &d).await, data);
    // ALPN chose HTTP/2.
    assert!(
        reg.requests().iter().any(|l| l.contains("HTTP/2.0")),
        "{:#?}",
        reg.requests()
    );

    // skip_verify without the CA.
    let client = client_for(
        &dir.path().join("skip"),
        &reg.host(),
        &format!("server = \"https://{}\"\nskip_verify = true\n", reg.host()),
    );
    assert!(client.blob_exists(&r, &d).await.unwrap());

    // Neither: the certificate is refused, and the error says where.
    let client = client_for(
        &dir.path().join("none"),
        &reg.host(),
        &format!("server = \"https://{}\"\n", reg.host()),
    );
    let e = client.blob_exists(&r, &d).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&reg.host()) && msg.to_lowercase().contains("certificate"),
        "{msg}"
    );

    // And the loopback default (plain HTTP) cannot talk to it either.
    let e = plain_client(&dir).blob_exists(&r, &d).await.unwrap_err();
    assert!(e.target().is_some_and(|t| t.host == reg.host()), "{e}");
}
