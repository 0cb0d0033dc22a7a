//! End-to-end image tests: the berth binary against a real registry.

mod common;

use common::*;

fn manifest_json(reference: &str) -> serde_json::Value {
    serde_json::from_slice(&skopeo_raw(reference, false)).unwrap()
}

#[test]
fn pull_records_the_registry_digests_and_second_pull_fetches_nothing() {
    let reg = registry();
    let b = Berth::new();
    let reference = format!("{reg}/big:latest");
    let raw = skopeo_raw(&reference, false);
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let layers: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(layers.len() >= 4, "big image has {} layers", layers.len());

    let out = b.ok("default", &["image", "pull", &reference]);
    assert!(out.contains(&format!("{} layers fetched", layers.len())), "{out}");

    let img = &b.json("default", &["image", "inspect", &reference])[0];
    assert_eq!(
        img["digest"],
        sha256_of(&raw),
        "manifest digest as skopeo sees it"
    );
    assert_eq!(img["id"], m["config"]["digest"]);
    let got: Vec<&str> = img["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(got, layers);
    // every layer is unpacked, and every blob on disk hashes to its name
    let config = skopeo_raw(&reference, true);
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(img["config"]["rootfs"], config["rootfs"]);
    for s in img["snapshots"].as_array().unwrap() {
        assert!(std::path::Path::new(s["path"].as_str().unwrap()).is_dir(), "{s}");
    }
    for d in b.blobs() {
        assert_eq!(
            file_digest(&b.root().join("content/blobs/sha256").join(&d[7..])),
            d
        );
    }
    let total: u64 = img["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["size"].as_u64().unwrap())
        .sum();
    assert!(total >= 100 << 20, "unpacked {total} bytes, want >= 100 MiB");

    let again = b.ok("default", &["image", "pull", &reference]);
    assert!(
        again.contains(&format!("0 layers fetched, {} already present", layers.len())),
        "{again}"
    );
}

#[test]
fn pulls_every_format_the_registry_serves() {
    let reg = registry();
    let b = Berth::new();
    for (tag, manifest_type) in [
        ("busybox:latest", "application/vnd.oci.image.manifest.v1+json"),
        (
            "busybox:docker",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
        ("big:latest", "application/vnd.oci.image.manifest.v1+json"),
        ("big:zstd", "application/vnd.oci.image.manifest.v1+json"),
        (
            "uncompressed:latest",
            "application/vnd.oci.image.manifest.v1+json",
        ),
        ("multi:latest", "application/vnd.oci.image.index.v1+json"),
    ] {
        let reference = format!("{reg}/{tag}");
        b.ok("default", &["image", "pull", &reference]);
        let img = &b.json("default", &["image", "inspect", &reference])[0];
        assert_eq!(img["media_type"], manifest_type, "{tag}");
        assert_eq!(img["digest"], sha256_of(&skopeo_raw(&reference, false)), "{tag}");
        assert_eq!(
            img["config"]["architecture"], "amd64",
            "{tag} resolves to this host's platform"
        );
    }
    // zstd and gzip copies of one image unpack to the same snapshots
    let gz = b.json("default", &["image", "inspect", &format!("{reg}/big:latest")]);
    let zs = b.json("default", &["image", "inspect", &format!("{reg}/big:zstd")]);
    assert_eq!(gz[0]["snapshots"], zs[0]["snapshots"]);
    assert_eq!(gz[0]["snapshots"].as_array().unwrap().len(), 5);
}

#[test]
fn index_pull_can_pick_another_platform_and_names_what_is_missing() {
    let reg = registry();
    let b = Berth::new();
    let reference = format!("{reg}/multi:latest");
    b.ok(
        "default",
        &["image", "pull", "--platform", "linux/arm64", &reference],
    );
    let img = &b.json("default", &["image", "inspect", &reference])[0];
    // the host platform's manifest was not pulled, so inspect falls back to
    // the only local one
    assert_eq!(img["config"]["architecture"], "arm64");
    // pushing it copies the one platform that is here, not a dangling index
    let dst = format!("{reg}/arm64-only-{}:t", std::process::id());
    b.ok("default", &["image", "push", &reference, &dst]);
    let pushed = manifest_json(&dst);
    assert_eq!(
        pushed["config"]["digest"], img["id"],
        "the arm64 manifest went, not the index"
    );
    let err = b.fails(
        "default",
        &["image", "pull", "--platform", "linux/s390x", &reference],
    );
    assert!(
        err.contains("linux/s390x") && err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
}

#[test]
fn pushed_image_pulls_back_byte_identical_with_skopeo() {
    let reg = registry();
    let b = Berth::new();
    let src = format!("{reg}/busybox:latest");
    b.ok("default", &["image", "pull", &src]);
    let repo = format!("pushed-{}", std::process::id());
    let dst = format!("{reg}/{repo}:copy");
    let out = b.ok("default", &["image", "push", &src, &dst]);
    // same registry, other repository: blobs are mounted, not uploaded
    assert!(out.contains("0 blobs uploaded"), "{out}");

    assert_eq!(skopeo_raw(&dst, false), skopeo_raw(&src, false), "manifest bytes");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("oci");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
        &format!("docker://{dst}"),
        &format!("oci:{}:x", layout.display()),
    ]);
    let m = manifest_json(&dst);
    for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
        let digest = d["digest"].as_str().unwrap();
        let theirs = layout.join("blobs/sha256").join(&digest[7..]);
        let ours = b.root().join("content/blobs/sha256").join(&digest[7..]);
        assert_eq!(
            std::fs::read(theirs).unwrap(),
            std::fs::read(ours).unwrap(),
            "blob {digest}"
        );
    }

    // a fresh repository on the push path uploads (monolithic or chunked)
    let b2 = Berth::new();
    b2.ok("default", &["image", "pull", &src]);
    b2.ok(
        "default",
        &["image", "tag", &src, &format!("{reg}/{repo}-solo:v1")],
    );
    let out = b2.ok("default", &["image", "push", &format!("{reg}/{repo}-solo:v1")]);
    assert!(out.contains("0 mounted"), "{out}");
    assert_eq!(
        skopeo_raw(&format!("{reg}/{repo}-solo:v1"), false),
        skopeo_raw(&src, false)
    );
    // pushing again finds everything there
    let out = b2.ok("default", &["image", "push", &format!("{reg}/{repo}-solo:v1")]);
    assert!(out.contains("0 blobs uploaded, 0 mounted"), "{out}");
}

#[test]
fn namespaces_share_blobs_and_gc_frees_only_the_unreferenced() {
    let reg = registry();
    let b = Berth::new();
    let reference = format!("{reg}/busybox:latest");
    b.ok("tenant-a", &["image", "pull", &reference]);
    let blobs = b.blobs();
    let snaps = b.snapshot_dirs();
    let out = b.ok("tenant-b", &["image", "pull", &reference]);
    assert!(
        out.contains("0 layers fetched"),
        "second namespace reuses the layer: {out}"
    );
    assert_eq!(b.blobs(), blobs, "one copy of each blob for both namespaces");
    assert_eq!(b.snapshot_dirs(), snaps);
    assert!(
        b.ok("default", &["image", "ls", "-q"]).is_empty(),
        "namespaces keep images apart"
    );

    b.ok("tenant-a", &["image", "rm", &reference]);
    assert!(b.ok("tenant-a", &["image", "ls", "-q"]).is_empty());
    let img = &b.json("tenant-b", &["image", "inspect", &reference])[0];
    assert_eq!(img["name"], reference);
    let gc = b.json("default", &["gc", "--json"]);
    assert_eq!(
        (gc["blobs_removed"].as_u64(), gc["snapshots_removed"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(b.blobs(), blobs);

    b.ok("tenant-b", &["image", "rm", &reference]);
    let gc = b.json("default", &["gc", "--json"]);
    assert_eq!(gc["blobs_removed"].as_u64(), Some(blobs.len() as u64));
    assert!(gc["bytes_freed"].as_u64().unwrap() > 0);
    assert!(b.blobs().is_empty());
    assert_eq!(b.snapshot_dirs(), 0);
}

#[test]
fn bad_references_and_missing_images_fail_clearly_and_keep_the_store() {
    let reg = registry();
    let b = Berth::new();
    let good = format!("{reg}/busybox:latest");
    b.ok("default", &["image", "pull", &good]);
    let before = b.blobs();

    let err = b.fails(
        "default",
        &["image", "pull", &format!("{reg}/busybox:no-such-tag")],
    );
    assert!(err.contains("no-such-tag"), "{err}");
    let err = b.fails("default", &["image", "pull", "UPPER/case"]);
    assert!(err.contains("UPPER/case"), "{err}");
    let err = b.fails("default", &["image", "rm", "never-pulled"]);
    assert!(err.contains("never-pulled"), "{err}");
    let err = b.fails("Bad/NS", &["image", "ls"]);
    assert!(err.contains("Bad/NS"), "{err}");
    assert_eq!(b.blobs(), before);
    assert_eq!(b.ok("default", &["image", "ls", "-q"]).trim(), good);
}

#[test]
fn hosts_toml_mirror_serves_a_registry_that_does_not_exist() {
    let reg = registry();
    let b = Berth::new();
    let dir = b.certs_dir().join("mirror.invalid");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!("server = \"https://mirror.invalid\"\n[host.\"http://{reg}\"]\ncapabilities = [\"pull\", \"resolve\"]\n"),
    )
    .unwrap();
    b.ok("default", &["image", "pull", "mirror.invalid/busybox:latest"]);
    let img = &b.json("default", &["image", "inspect", "mirror.invalid/busybox:latest"])[0];
    assert_eq!(
        img["digest"],
        sha256_of(&skopeo_raw(&format!("{reg}/busybox:latest"), false))
    );
}

#[test]
fn export_import_round_trip_and_foreign_archives() {
    let reg = registry();
    let b = Berth::new();
    let reference = format!("{reg}/busybox:latest");
    b.ok("default", &["image", "pull", &reference]);
    let digest = b.json("default", &["image", "inspect", &reference])[0]["digest"].clone();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("busybox.tar");
    b.ok(
        "default",
        &["image", "export", "-o", tar.to_str().unwrap(), &reference],
    );

    // into a fresh store
    let b2 = Berth::new();
    let out = b2.ok("default", &["image", "import", tar.to_str().unwrap()]);
    assert!(out.contains(&reference), "{out}");
    let img = &b2.json("default", &["image", "inspect", &reference])[0];
    assert_eq!(img["digest"], digest);
    assert!(
        std::path::Path::new(img["snapshots"][0]["path"].as_str().unwrap())
            .join("bin/busybox")
            .exists()
    );
    assert_eq!(b2.blobs(), b.blobs());

    // our export is a valid OCI layout and docker archive for skopeo
    let back = format!("{reg}/exported-{}:t", std::process::id());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", tar.display()),
        &format!("docker://{back}"),
    ]);
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker-archive:{}", tar.display()),
    ]);

    // skopeo's own archives: oci-archive (tag only) and docker-archive
    let oci = dir.path().join("oci.tar");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci-archive:{}:v9", oci.display()),
    ]);
    let b3 = Berth::new();
    let err = b3.fails("default", &["image", "import", oci.to_str().unwrap()]);
    assert!(err.contains("--name"), "{err}");
    b3.ok(
        "default",
        &[
            "image",
            "import",
            "--name",
            "example.com/imported",
            oci.to_str().unwrap(),
        ],
    );
    let img = &b3.json("default", &["image", "inspect", "example.com/imported:v9"])[0];
    assert_eq!(img["digest"], digest);

    let docker = dir.path().join("docker.tar");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("docker-archive:{}:example.com/saved:1", docker.display()),
    ]);
    let out = b3.ok("default", &["image", "import", docker.to_str().unwrap()]);
    assert!(out.contains("example.com/saved:1"), "{out}");
    let img = &b3.json("default", &["image", "inspect", "example.com/saved:1"])[0];
    assert_eq!(
        img["config"]["rootfs"],
        b.json("default", &["image", "inspect", &reference])[0]["config"]["rootfs"]
    );
}

#[test]
fn import_name_is_a_base_reference_for_the_archives_own_names() {
    let reg = registry();
    let reference = format!("{reg}/busybox:latest");
    let dir = tempfile::tempdir().unwrap();
    let archive = |file: &str, what: &str| {
        let path = dir.path().join(file);
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("{what}:{}:{}", path.display(), file.trim_end_matches(".tar")),
        ]);
        path.to_str().unwrap().to_string()
    };
    let names = |b: &Berth| {
        let mut v: Vec<String> = b
            .ok("default", &["image", "ls", "-q"])
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    // skopeo writes `busybox:latest` into ref.name, a reference, not a tag.
    let oci_ref = {
        let path = dir.path().join("ref.tar");
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci-archive:{}:busybox:latest", path.display()),
        ]);
        path.to_str().unwrap().to_string()
    };
    let b = Berth::new();
    b.ok("default", &["image", "import", "--name", "busybox", &oci_ref]);
    b.ok("default", &["image", "import", &oci_ref]);
    b.ok(
        "default",
        &["image", "import", "--name", "example.com/x", &oci_ref],
    );
    assert_eq!(
        names(&b),
        ["docker.io/library/busybox:latest", "example.com/x:latest"]
    );

    // A bare tag: BASE:TAG; BASE with a tag of its own is the whole name.
    let oci_tag = archive("v9.tar", "oci-archive");
    let b = Berth::new();
    b.ok(
        "default",
        &["image", "import", "--name", "example.com/app", &oci_tag],
    );
    b.ok(
        "default",
        &["image", "import", "--name", "example.com/pinned:7", &oci_tag],
    );
    assert_eq!(names(&b), ["example.com/app:v9", "example.com/pinned:7"]);

    // docker save: each RepoTag's tag onto BASE.
    let docker = dir.path().join("docker.tar");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("docker-archive:{}:example.com/saved:1", docker.display()),
    ]);
    let b = Berth::new();
    b.ok(
        "default",
        &["image", "import", "--name", "other", docker.to_str().unwrap()],
    );
    assert_eq!(names(&b), ["docker.io/library/other:1"]);

    // Two images in one archive (berth's export, containerd's annotations).
    let b = Berth::new();
    b.ok("default", &["image", "pull", &reference]);
    b.ok("default", &["image", "pull", &format!("{reg}/busybox:docker")]);
    b.ok(
        "default",
        &[
            "image",
            "tag",
            &format!("{reg}/busybox:docker"),
            "elsewhere/bb:latest",
        ],
    );
    let two = dir.path().join("two.tar");
    let clash = dir.path().join("clash.tar");
    b.ok(
        "default",
        &[
            "image",
            "export",
            "-o",
            two.to_str().unwrap(),
            &reference,
            &format!("{reg}/busybox:docker"),
        ],
    );
    b.ok(
        "default",
        &[
            "image",
            "export",
            "-o",
            clash.to_str().unwrap(),
            &reference,
            "elsewhere/bb:latest",
        ],
    );
    let b2 = Berth::new();
    b2.ok(
        "default",
        &[
            "image",
            "import",
            "--name",
            "example.com/both",
            two.to_str().unwrap(),
        ],
    );
    assert_eq!(names(&b2), ["example.com/both:docker", "example.com/both:latest"]);
    // Ambiguous: one tagged name for two images, or two images onto one
    // name. Refused, naming them, with nothing stored.
    let b3 = Berth::new();
    let err = b3.fails(
        "default",
        &[
            "image",
            "import",
            "--name",
            "example.com/one:1",
            two.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("--name \"example.com/one:1\"") && err.contains("holds 2"),
        "{err}"
    );
    let err = b3.fails(
        "default",
        &[
            "image",
            "import",
            "--name",
            "example.com/one",
            clash.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("the same name example.com/one:latest")
            && err.matches("index.json entry sha256:").count() == 2,
        "{err}"
    );
    assert!(names(&b3).is_empty());
}

#[test]
fn corrupt_archive_is_refused_naming_the_blob_and_stores_nothing() {
    let reg = registry();
    let b = Berth::new();
    b.ok("default", &["image", "pull", &format!("{reg}/busybox:latest")]);
    let before = b.blobs();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("bad.tar");
    {
        let mut t = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let name = format!("blobs/sha256/{}", "ab".repeat(32));
        let mut h = tar::Header::new_ustar();
        h.set_size(4);
        h.set_mode(0o644);
        t.append_data(&mut h, &name, &b"evil"[..]).unwrap();
        t.finish().unwrap();
    }
    let err = b.fails("default", &["image", "import", tar.to_str().unwrap()]);
    assert!(
        err.contains(&"ab".repeat(32)) && err.contains("mismatch"),
        "{err}"
    );
    assert_eq!(b.blobs(), before);
    assert_eq!(b.ok("default", &["image", "ls", "-q"]).lines().count(), 1);
}

#[test]
fn concurrent_processes_on_one_root_with_gc_running_lose_nothing() {
    let reg = registry();
    let b = Berth::new();
    // big:latest and big:zstd share every diff_id: both processes unpack the
    // same snapshots at once and one of them must win cleanly.
    let refs = [
        format!("{reg}/big:latest"),
        format!("{reg}/big:zstd"),
        format!("{reg}/busybox:docker"),
    ];
    let children: Vec<_> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| b.spawn(&format!("ns{i}"), &["image", "pull", r]))
        .collect();
    for _ in 0..5 {
        b.ok("default", &["gc"]);
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let gc = b.json("default", &["gc", "--json"]);
    assert_eq!(gc["blobs_removed"], 0, "everything pulled is referenced");
    assert_eq!(gc["snapshots_removed"], 0);
    for (i, r) in refs.iter().enumerate() {
        let img = &b.json(&format!("ns{i}"), &["image", "inspect", r])[0];
        for s in img["snapshots"].as_array().unwrap() {
            assert!(
                std::path::Path::new(s["path"].as_str().unwrap()).is_dir(),
                "{r}: {s}"
            );
        }
    }
    for d in b.blobs() {
        assert_eq!(
            file_digest(&b.root().join("content/blobs/sha256").join(&d[7..])),
            d
        );
    }
    let staging = std::fs::read_dir(b.root().join("snapshots/staging"))
        .unwrap()
        .count();
    assert_eq!(staging, 0, "losing unpacks leave no staging directories");
}
