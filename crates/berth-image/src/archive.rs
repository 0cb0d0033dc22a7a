//! Import and export of image archives: OCI image layout tars (skopeo's
//! oci-archive, containerd's export) and `docker save` tars (classic and the
//! OCI-layout-based format of Docker 25+).
//!
//! Import is one pass over the tar, so it also works from a pipe: every file
//! goes straight into the content store (blobs/sha256/<hex> entries verified
//! against their names), and only the small JSON index files stay in memory.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use berth_api::{Digest, Namespace};
use berth_registry::Reference;
use berth_store::{ImageRecord, Lease, Resource};
use serde::{Deserialize, Serialize};

use crate::media::{self, Descriptor, Parsed};
use crate::{ImageError, Images};

const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// index.json, manifest.json and friends; anything larger is not an index.
const MAX_INDEX_FILE: u64 = 16 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn archive_err(msg: impl Into<String>) -> ImageError {
    ImageError::Archive(msg.into())
}

impl Images {
    /// Loads every image of an archive into `ns`. Images the archive names
    /// only by a tag get `base_name` as their repository.
    pub fn import<R: Read>(
        &self,
        ns: &Namespace,
        reader: R,
        base_name: Option<&str>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let lease = self
            .store
            .create_lease(ns, std::time::Duration::from_secs(3600))?;
        let res = self.import_leased(ns, reader, base_name, &lease);
        if let Err(e) = self.store.delete_lease(&lease) {
            tracing::warn!(error = %e, "could not end import lease; gc ends it when it expires");
        }
        res
    }

    fn import_leased<R: Read>(
        &self,
        ns: &Namespace,
        reader: R,
        base_name: Option<&str>,
        lease: &Lease,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let mut files: HashMap<String, Digest> = HashMap::new();
        let mut links: HashMap<String, String> = HashMap::new();
        let mut small: HashMap<String, Vec<u8>> = HashMap::new();
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| archive_err(format!("read archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| archive_err(format!("read archive: {e}")))?;
            let path = clean(&entry.path_bytes());
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                // Classic docker save links identical layers to one copy.
                if let Some(target) = entry.link_name_bytes() {
                    let t = clean(&target);
                    let resolved = if kind.is_symlink() {
                        join_relative(&path, &t)
                    } else {
                        t
                    };
                    links.insert(path, resolved);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            if matches!(
                path.as_str(),
                "index.json" | "manifest.json" | "oci-layout" | "repositories"
            ) {
                if entry.size() > MAX_INDEX_FILE {
                    return Err(archive_err(format!(
                        "archive entry {path}: {} bytes is too large",
                        entry.size()
                    )));
                }
                let mut buf = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| archive_err(format!("archive entry {path}: {e}")))?;
                small.insert(path, buf);
                continue;
            }
            let expected = match path.strip_prefix("blobs/") {
                Some(rest) => Some(
                    rest.replacen('/', ":", 1)
                        .parse::<Digest>()
                        .map_err(|e| archive_err(format!("archive entry {path}: {e}")))?,
                ),
                None => None,
            };
            if let Some(d) = &expected {
                self.store.lease_add(lease, &Resource::Blob(d.clone()))?;
            }
            let mut ingest = self
                .store
                .content()
                .ingest(expected.clone(), Some(entry.size()))?;
            std::io::copy(&mut entry, &mut ingest)
                .map_err(|e| archive_err(format!("archive entry {path}: {e}")))?;
            let d = ingest
                .commit()
                .map_err(|e| archive_err(format!("archive entry {path}: {e}")))?;
            if expected.is_none() {
                self.store.lease_add(lease, &Resource::Blob(d.clone()))?;
            }
            files.insert(path, d);
        }
        let resolve = |p: &str| -> Result<Digest, ImageError> {
            let mut p = clean(p.as_bytes());
            for _ in 0..16 {
                if let Some(d) = files.get(&p) {
                    return Ok(d.clone());
                }
                match links.get(&p) {
                    Some(t) => p = t.clone(),
                    None => break,
                }
            }
            Err(archive_err(format!("archive has no file {p}")))
        };

        if let Some(index) = small.get("index.json") {
            let idx: media::Index =
                serde_json::from_slice(index).map_err(|e| archive_err(format!("index.json: {e}")))?;
            let mut found = Vec::new();
            for desc in &idx.manifests {
                if !self.store.content().exists(&desc.digest) {
                    return Err(archive_err(format!(
                        "index.json names {} which the archive lacks",
                        desc.digest
                    )));
                }
                let own = own_name(desc)?;
                found.push((
                    format!("index.json entry {}", desc.digest),
                    desc.clone(),
                    vec![own],
                ));
            }
            // Every name is settled before anything is recorded, so an
            // ambiguous archive leaves the store as it was.
            let named = name_images(&found, base_name)?;
            let mut out = Vec::new();
            for ((_, desc, _), names) in found.iter().zip(named) {
                self.unpack_local(lease, desc)?;
                for name in names {
                    out.push(self.record(ns, &name, desc)?);
                }
            }
            return Ok(out);
        }
        let Some(manifest) = small.get("manifest.json") else {
            return Err(archive_err(
                "archive has neither index.json (OCI layout) nor manifest.json (docker save)",
            ));
        };
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(manifest).map_err(|e| archive_err(format!("manifest.json: {e}")))?;
        let mut found = Vec::new();
        for entry in entries {
            let config = resolve(&entry.config)?;
            let mut layers = Vec::new();
            for l in &entry.layers {
                let d = resolve(l)?;
                let size = self.store.content().size(&d)?;
                layers.push(Descriptor::new(
                    layer_media_type(&self.store.content().open_blob(&d)?)?,
                    d,
                    size,
                ));
            }
            let m = media::Manifest {
                schema_version: 2,
                media_type: Some(media::OCI_MANIFEST.into()),
                config: Descriptor::new(
                    media::OCI_CONFIG,
                    config.clone(),
                    self.store.content().size(&config)?,
                ),
                layers,
                annotations: BTreeMap::new(),
            };
            let bytes = serde_json::to_vec(&m).expect("manifest serializes");
            let digest = self.store.content().write_all(&bytes, None)?;
            self.store.lease_add(lease, &Resource::Blob(digest.clone()))?;
            let desc = Descriptor::new(media::OCI_MANIFEST, digest, bytes.len() as u64);
            let what = format!("manifest.json entry {}", entry.config);
            let mut own = Vec::new();
            for t in entry.repo_tags.unwrap_or_default() {
                let r =
                    Reference::parse(&t).map_err(|e| archive_err(format!("{what}: RepoTags {t:?}: {e}")))?;
                own.push(OwnName::Full(r));
            }
            if own.is_empty() {
                own.push(OwnName::None);
            }
            found.push((what, desc, own));
        }
        let named = name_images(&found, base_name)?;
        let mut out = Vec::new();
        for ((_, desc, _), names) in found.iter().zip(named) {
            self.unpack_local(lease, desc)?;
            for name in names {
                out.push(self.record(ns, &name, desc)?);
            }
        }
        Ok(out)
    }

    fn record(&self, ns: &Namespace, name: &str, desc: &Descriptor) -> Result<ImageRecord, ImageError> {
        let img = ImageRecord {
            name: name.to_string(),
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            created: 0,
            updated: 0,
            labels: BTreeMap::new(),
        };
        self.store.put_image(ns, &img)?;
        Ok(self.store.get_image(ns, name)?)
    }

    /// Unpacks (in parallel) every layer of a locally stored image and records
    /// its references for gc.
    fn unpack_local(&self, lease: &Lease, top: &Descriptor) -> Result<(), ImageError> {
        let bytes = self.store.content().read(&top.digest)?;
        let manifest_digest = match media::parse_manifest(&top.media_type, &bytes)
            .map_err(|e| ImageError::malformed("manifest", &top.digest, e))?
        {
            Parsed::Manifest(_) => top.digest.clone(),
            Parsed::Index(idx) => {
                let present: Vec<Resource> = idx
                    .manifests
                    .iter()
                    .filter(|d| self.store.content().exists(&d.digest))
                    .map(|d| Resource::Blob(d.digest.clone()))
                    .collect();
                self.store
                    .add_refs(&Resource::Blob(top.digest.clone()), &present)?;
                self.local_manifest(&top.digest, &idx)?.digest
            }
        };
        let manifest = self.manifest_for_host(&top.digest, &top.media_type)?;
        let cfg_bytes = self.store.content().read(&manifest.config.digest)?;
        let config: media::ImageConfig = serde_json::from_slice(&cfg_bytes)
            .map_err(|e| ImageError::malformed("image config", &manifest.config.digest, e))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::malformed(
                "image config",
                &manifest.config.digest,
                format!(
                    "{} diff_ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            ));
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = manifest
                .layers
                .iter()
                .zip(&config.rootfs.diff_ids)
                .map(|(l, d)| s.spawn(move || self.ensure_snapshot(lease, l, d)))
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("unpack thread panicked"))
        })?;
        self.record_refs(&manifest_digest, &manifest, &config)
    }

    /// Writes the images to `w` as an OCI image layout tar that also carries
    /// docker's manifest.json, so both `berth image import` and `docker load`
    /// read it.
    pub fn export<W: Write>(&self, ns: &Namespace, names: &[String], w: W) -> Result<(), ImageError> {
        let mut tar = tar::Builder::new(w);
        let mut written: Vec<Digest> = Vec::new();
        let mut index = media::Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        };
        let mut docker: Vec<DockerEntry> = Vec::new();
        let io = |e: std::io::Error| ImageError::Io {
            context: "write archive".into(),
            source: e,
        };
        append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
        for name in names {
            let img = self.lookup(ns, name)?;
            let copy = self.copyable(&img)?;
            let top = copy.top().clone();
            let m = self.manifest_for_host(&top.digest, &top.media_type)?;
            let blobs = copy
                .manifests
                .iter()
                .map(|(d, _)| &d.digest)
                .chain(copy.blobs.iter().map(|d| &d.digest));
            for d in blobs {
                if written.contains(d) {
                    continue;
                }
                let f = self.store.content().open_blob(d)?;
                let size = f.metadata().map_err(io)?.len();
                let mut h = tar::Header::new_ustar();
                h.set_size(size);
                h.set_mode(0o444);
                h.set_mtime(0);
                tar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), f)
                    .map_err(io)?;
                written.push(d.clone());
            }
            let reference = Reference::parse(&img.name).ok();
            let mut desc = top;
            desc.annotations.insert(NAME_ANNOTATION.into(), img.name.clone());
            if let Some(tag) = reference.as_ref().and_then(|r| r.tag.clone()) {
                desc.annotations.insert(REF_ANNOTATION.into(), tag);
            }
            index.manifests.push(desc);
            docker.push(DockerEntry {
                config: format!("blobs/sha256/{}", m.config.digest.hex()),
                repo_tags: Some(
                    reference
                        .iter()
                        .filter(|r| r.tag.is_some())
                        .map(|r| r.familiar())
                        .collect(),
                ),
                layers: m
                    .layers
                    .iter()
                    .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
                    .collect(),
            });
        }
        append(
            &mut tar,
            "index.json",
            &serde_json::to_vec(&index).expect("index serializes"),
        )
        .map_err(io)?;
        append(
            &mut tar,
            "manifest.json",
            &serde_json::to_vec(&docker).expect("manifest serializes"),
        )
        .map_err(io)?;
        tar.into_inner().map_err(io)?.flush().map_err(io)?;
        Ok(())
    }
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    tar.append_data(&mut h, name, data)
}

/// How an archive names one of its images.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnName {
    /// A whole reference: containerd's `io.containerd.image.name`, a
    /// `ref.name` that is one (docker's and some tools' habit), a RepoTag.
    Full(Reference),
    /// A `ref.name` that is only a tag, as the OCI layout intends (skopeo's
    /// `oci-archive:FILE:TAG`).
    Tag(String),
    None,
}

impl std::fmt::Display for OwnName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnName::Full(r) => write!(f, "{r}"),
            OwnName::Tag(t) => write!(f, "tag {t:?}"),
            OwnName::None => f.write_str("no name"),
        }
    }
}

/// The name an index.json entry gives its image.
fn own_name(desc: &Descriptor) -> Result<OwnName, ImageError> {
    if let Some(n) = desc.annotations.get(NAME_ANNOTATION) {
        return Reference::parse(n).map(OwnName::Full).map_err(|e| {
            archive_err(format!(
                "index.json entry {}: annotation {NAME_ANNOTATION} {n:?}: {e}",
                desc.digest
            ))
        });
    }
    match desc.annotations.get(REF_ANNOTATION) {
        None => Ok(OwnName::None),
        Some(t) if berth_registry::reference::is_valid_tag(t) => Ok(OwnName::Tag(t.clone())),
        Some(r) => Reference::parse(r).map(OwnName::Full).map_err(|e| {
            archive_err(format!(
                "index.json entry {}: annotation {REF_ANNOTATION} {r:?} is neither a tag nor a reference: {e}",
                desc.digest
            ))
        }),
    }
}

/// True when `base` (as the user wrote it) carries a tag or digest of its
/// own; `Reference::parse` cannot say, as it fills in `latest`.
fn names_a_tag(base: &str) -> bool {
    base.contains('@') || base.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// The names the images of an archive are stored under; `images` holds,
/// per image, what it is called in errors, its descriptor and its own names.
///
/// Without a base, an image keeps its own full names; one named only by a
/// tag, or not at all, is an error. With a base (`--name`):
/// - a base with a tag or digest is the whole name of the archive's only
///   image (an archive of several is refused);
/// - otherwise the base is a repository: an own tag `T` gives `BASE:T`, an
///   own full reference gives BASE with that reference's tag (and digest),
///   an image with no name gets `BASE:latest` — but only one image may, and
///   no two images may end up with the same name.
fn name_images(
    images: &[(String, Descriptor, Vec<OwnName>)],
    base: Option<&str>,
) -> Result<Vec<Vec<String>>, ImageError> {
    let Some(base) = base else {
        return images
            .iter()
            .map(|(what, _, own)| {
                own.iter()
                    .map(|o| match o {
                        OwnName::Full(r) => Ok(r.to_string()),
                        OwnName::Tag(t) => Err(archive_err(format!(
                            "{what} is named only by tag {t:?}: give a name with --name"
                        ))),
                        OwnName::None => {
                            Err(archive_err(format!("{what} has no name: give one with --name")))
                        }
                    })
                    .collect()
            })
            .collect();
    };
    let parsed = Reference::parse(base)?;
    if names_a_tag(base) {
        let distinct: std::collections::HashSet<&Digest> = images.iter().map(|(_, d, _)| &d.digest).collect();
        if distinct.len() > 1 {
            let list: Vec<String> = images
                .iter()
                .map(|(what, _, own)| format!("{what} ({})", join(own)))
                .collect();
            return Err(archive_err(format!(
                "--name {base:?} has a tag or digest, so it can name only one image, but the archive holds {}: {}; give --name a repository without tag for each to keep its own tag",
                distinct.len(),
                list.join(", ")
            )));
        }
        return Ok(images.iter().map(|_| vec![parsed.to_string()]).collect());
    }
    let unnamed: Vec<&str> = images
        .iter()
        .filter(|(_, _, own)| own.contains(&OwnName::None))
        .map(|(what, _, _)| what.as_str())
        .collect();
    if unnamed.len() > 1 {
        return Err(archive_err(format!(
            "--name {base:?} would name {} images {parsed}: {} have no name of their own",
            unnamed.len(),
            unnamed.join(", ")
        )));
    }
    // Which image took which name, to refuse two images under one.
    let mut taken: HashMap<String, (&str, &Digest)> = HashMap::new();
    let mut out = Vec::new();
    for (what, desc, own) in images {
        let mut names = Vec::new();
        for o in own {
            let mut r = parsed.clone();
            match o {
                OwnName::Full(own) => {
                    r.tag = own.tag.clone();
                    r.digest = own.digest.clone();
                }
                OwnName::Tag(t) => {
                    r.tag = Some(t.clone());
                    r.digest = None;
                }
                OwnName::None => {}
            }
            let name = r.to_string();
            match taken.get(&name) {
                Some((other, d)) if *d != &desc.digest => {
                    return Err(archive_err(format!(
                        "--name {base:?} gives {other} and {what} the same name {name}: import them one at a time with a full --name each"
                    )));
                }
                Some(_) => {}
                None => {
                    taken.insert(name.clone(), (what.as_str(), &desc.digest));
                }
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        out.push(names);
    }
    Ok(out)
}

fn join(own: &[OwnName]) -> String {
    own.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", ")
}

/// Media type of a layer blob from its first bytes (docker save does not say).
fn layer_media_type(f: &std::fs::File) -> Result<&'static str, ImageError> {
    let mut magic = [0u8; 4];
    let n = std::os::unix::fs::FileExt::read_at(f, &mut magic, 0).map_err(|e| ImageError::Io {
        context: "read layer".into(),
        source: e,
    })?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => media::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media::OCI_LAYER_ZSTD,
        _ => media::OCI_LAYER_TAR,
    })
}

fn clean(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(p);
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn join_relative(from: &str, target: &str) -> String {
    let dir = from.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    clean(format!("{dir}/{target}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_within_the_archive() {
        assert_eq!(clean(b"./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(clean(b"../../etc/passwd"), "etc/passwd");
        assert_eq!(
            join_relative("abc/layer.tar", "../def/layer.tar"),
            "def/layer.tar"
        );
    }

    fn entry(n: u8, annotations: &[(&str, &str)]) -> (String, Descriptor, Vec<OwnName>) {
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::from_sha256(&[n; 32]), 1);
        for (k, v) in annotations {
            d.annotations.insert(k.to_string(), v.to_string());
        }
        let own = own_name(&d).unwrap();
        (format!("entry {n}"), d, vec![own])
    }

    fn names(
        images: &[(String, Descriptor, Vec<OwnName>)],
        base: Option<&str>,
    ) -> Result<Vec<Vec<String>>, String> {
        name_images(images, base).map_err(|e| e.to_string())
    }

    #[test]
    fn own_names_from_annotations() {
        let (_, _, own) = entry(1, &[(REF_ANNOTATION, "v1")]);
        assert_eq!(own, [OwnName::Tag("v1".into())]);
        // skopeo's oci-archive:FILE:busybox:latest writes a reference here.
        let (_, _, own) = entry(1, &[(REF_ANNOTATION, "busybox:latest")]);
        assert_eq!(own, [OwnName::Full(Reference::parse("busybox:latest").unwrap())]);
        // containerd's own annotation wins over ref.name.
        let (_, _, own) = entry(
            1,
            &[(REF_ANNOTATION, "latest"), (NAME_ANNOTATION, "example.com/a:1")],
        );
        assert_eq!(own, [OwnName::Full(Reference::parse("example.com/a:1").unwrap())]);
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::from_sha256(&[1; 32]), 1);
        d.annotations.insert(REF_ANNOTATION.into(), "Bad Name!".into());
        let err = own_name(&d).unwrap_err().to_string();
        assert!(err.contains(REF_ANNOTATION) && err.contains("Bad Name!"), "{err}");
    }

    #[test]
    fn names_without_a_base_are_the_archives_own() {
        let full = entry(1, &[(REF_ANNOTATION, "busybox:latest")]);
        assert_eq!(
            names(&[full], None).unwrap(),
            [["docker.io/library/busybox:latest"]]
        );
        let err = names(&[entry(1, &[(REF_ANNOTATION, "v1")])], None).unwrap_err();
        assert!(err.contains("\"v1\"") && err.contains("--name"), "{err}");
        let err = names(&[entry(1, &[])], None).unwrap_err();
        assert!(err.contains("entry 1") && err.contains("--name"), "{err}");
    }

    #[test]
    fn a_base_without_tag_is_the_repository_for_each_images_own_tag() {
        // A bare tag: BASE:TAG.
        assert_eq!(
            names(&[entry(1, &[(REF_ANNOTATION, "v1")])], Some("example.com/app")).unwrap(),
            [["example.com/app:v1"]]
        );
        // A full reference: its tag on BASE's repository (the report:
        // `--name busybox` with ref.name busybox:latest).
        assert_eq!(
            names(
                &[entry(1, &[(REF_ANNOTATION, "busybox:latest")])],
                Some("busybox")
            )
            .unwrap(),
            [["docker.io/library/busybox:latest"]]
        );
        assert_eq!(
            names(
                &[entry(1, &[(REF_ANNOTATION, "other.io/x/y:2.0")])],
                Some("localhost:5000/mine")
            )
            .unwrap(),
            [["localhost:5000/mine:2.0"]]
        );
        // No name of its own: BASE:latest.
        assert_eq!(
            names(&[entry(1, &[])], Some("app")).unwrap(),
            [["docker.io/library/app:latest"]]
        );
        // Several images, each keeping its tag.
        assert_eq!(
            names(
                &[
                    entry(1, &[(REF_ANNOTATION, "v1")]),
                    entry(2, &[(REF_ANNOTATION, "a/b:v2")])
                ],
                Some("app")
            )
            .unwrap(),
            [["docker.io/library/app:v1"], ["docker.io/library/app:v2"]]
        );
    }

    #[test]
    fn a_base_with_a_tag_names_a_single_image_as_is() {
        assert_eq!(
            names(&[entry(1, &[(REF_ANNOTATION, "busybox:1.36")])], Some("mine:v7")).unwrap(),
            [["docker.io/library/mine:v7"]]
        );
        // A port is not a tag.
        assert_eq!(
            names(&[entry(1, &[(REF_ANNOTATION, "v1")])], Some("localhost:5000/app")).unwrap(),
            [["localhost:5000/app:v1"]]
        );
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            names(&[entry(1, &[])], Some(&format!("app@{d}"))).unwrap(),
            [[format!("docker.io/library/app@{d}")]]
        );
    }

    #[test]
    fn ambiguous_names_are_refused_naming_the_images() {
        let two = [
            entry(1, &[(REF_ANNOTATION, "v1")]),
            entry(2, &[(REF_ANNOTATION, "v2")]),
        ];
        let err = names(&two, Some("app:x")).unwrap_err();
        assert!(
            err.contains("--name \"app:x\"") && err.contains("entry 1") && err.contains("entry 2"),
            "{err}"
        );
        let err = names(&[entry(1, &[]), entry(2, &[])], Some("app")).unwrap_err();
        assert!(
            err.contains("--name \"app\"") && err.contains("entry 1, entry 2"),
            "{err}"
        );
        let clash = [
            entry(1, &[(REF_ANNOTATION, "a:v1")]),
            entry(2, &[(REF_ANNOTATION, "b:v1")]),
        ];
        let err = names(&clash, Some("app")).unwrap_err();
        assert!(
            err.contains("entry 1 and entry 2") && err.contains("docker.io/library/app:v1"),
            "{err}"
        );
        // The same image twice is no clash.
        let mut same = entry(1, &[(REF_ANNOTATION, "a:v1")]);
        same.0 = "entry 1 again".into();
        assert_eq!(
            names(&[entry(1, &[(REF_ANNOTATION, "b:v1")]), same], Some("app")).unwrap(),
            [["docker.io/library/app:v1"], ["docker.io/library/app:v1"]]
        );
    }
}
