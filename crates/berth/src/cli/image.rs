//! `berth image …`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_image::{Images, PullOptions, media::Platform};
use berth_store::ImageRecord;
use clap::Subcommand;
use serde::Serialize;

use super::{Ctx, progress::Bars, runtime};

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Download an image from a registry and unpack it.
    Pull {
        /// Image reference, e.g. busybox, 127.0.0.1:5000/app:1, host/repo@sha256:…
        reference: String,
        /// Registry credentials (otherwise from ~/.docker/config.json).
        #[arg(long)]
        creds: Option<String>,
        /// Platform to pick from a multi-platform image (os/arch[/variant]).
        #[arg(long)]
        platform: Option<String>,
        /// Print only the image digest.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Upload an image to a registry.
    Push {
        /// Local image name.
        name: String,
        /// Destination reference [default: the image's own name].
        target: Option<String>,
        #[arg(long)]
        creds: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        json: bool,
        /// Print only names.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show an image's record, manifest and config as JSON.
    Inspect {
        names: Vec<String>,
        /// Accepted for symmetry with ls; output is always JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove image names (content is freed by `berth gc`).
    #[command(alias = "remove")]
    Rm { names: Vec<String> },
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Load images from an OCI layout tar or a `docker save` tar ("-" for stdin).
    ///
    /// Each image keeps the name the archive gives it (containerd's
    /// io.containerd.image.name, a reference in org.opencontainers.image.ref.name,
    /// docker's RepoTags). An image named only by a tag, or not at all, needs
    /// --name.
    Import {
        file: PathBuf,
        /// A base reference. Without a tag (REPO): an image the archive tags
        /// TAG becomes REPO:TAG, one it names by a whole reference keeps that
        /// reference's tag (or digest) on REPO, an unnamed one is
        /// REPO:latest. With a tag or digest (REPO:TAG): the name of the
        /// archive's only image, as is. Refused, naming the images: a tagged
        /// --name for several images, several unnamed images, two images
        /// onto one name.
        #[arg(long, value_name = "BASE")]
        name: Option<String>,
    },
    /// Write images to a tar (an OCI layout that `docker load` also reads).
    Export {
        #[arg(long, short)]
        output: PathBuf,
        names: Vec<String>,
    },
}

pub fn run(ctx: &Ctx, cmd: ImageCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCmd::Pull {
            reference,
            creds,
            platform,
            quiet,
        } => {
            let images = ctx.images(creds.as_deref())?;
            let mut opts = PullOptions {
                progress: if quiet { None } else { Bars::for_stderr() },
                ..Default::default()
            };
            if let Some(p) = platform {
                opts.platform = parse_platform(&p)?;
            }
            let report = runtime()?.block_on(images.pull(&ctx.namespace, &reference, &opts))?;
            if quiet {
                println!("{}", report.image.digest);
            } else {
                println!(
                    "{}: {} ({} layers fetched, {} already present, {})",
                    report.image.name,
                    report.image.digest,
                    report.layers_fetched,
                    report.layers_skipped,
                    human_size(report.bytes_fetched)
                );
            }
        }
        ImageCmd::Push { name, target, creds } => {
            let images = ctx.images(creds.as_deref())?;
            let r = runtime()?.block_on(images.push(&ctx.namespace, &name, target.as_deref()))?;
            println!(
                "{}: {} ({} blobs uploaded, {} mounted, {} already there)",
                r.reference,
                r.digest.map(|d| d.to_string()).unwrap_or_default(),
                r.blobs_uploaded,
                r.blobs_mounted,
                r.blobs_existing
            );
        }
        ImageCmd::Ls { json, quiet } => {
            let images = ctx.images(None)?;
            let rows: Vec<Row> = images
                .store()
                .list_images(&ctx.namespace)?
                .into_iter()
                .map(|i| Row::of(&images, i))
                .collect();
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else if quiet {
                for r in rows {
                    writeln!(out, "{}", r.name)?;
                }
            } else {
                writeln!(out, "{:<50} {:<13} {:>10}  DIGEST", "NAME", "ID", "SIZE")?;
                for r in rows {
                    let id = r.id.as_deref().map(|d| &d[7..19]).unwrap_or("-");
                    writeln!(
                        out,
                        "{:<50} {:<13} {:>10}  {}",
                        r.name,
                        id,
                        human_size(r.size),
                        r.digest
                    )?;
                }
            }
        }
        ImageCmd::Inspect { names, .. } => {
            let images = ctx.images(None)?;
            let mut out = Vec::new();
            for n in &names {
                out.push(inspect(&images, ctx, n)?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImageCmd::Rm { names } => {
            let images = ctx.images(None)?;
            let mut failed = false;
            for n in &names {
                match images.lookup(&ctx.namespace, n) {
                    Ok(img) => {
                        images.store().delete_image(&ctx.namespace, &img.name)?;
                        println!("{}", img.name);
                    }
                    Err(e) => {
                        eprintln!("berth: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        ImageCmd::Tag { source, target } => {
            let images = ctx.images(None)?;
            let mut img = images.lookup(&ctx.namespace, &source)?;
            img.name = berth_registry::Reference::parse(&target)?.to_string();
            images.store().put_image(&ctx.namespace, &img)?;
            println!("{}", img.name);
        }
        ImageCmd::Import { file, name } => {
            let images = ctx.images(None)?;
            let reader: Box<dyn std::io::Read + Send> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::fs::File::open(&file).with_context(|| format!("open {}", file.display()))?)
            };
            for img in images.import(&ctx.namespace, reader, name.as_deref())? {
                println!("{}: {}", img.name, img.digest);
            }
        }
        ImageCmd::Export { output, names } => {
            let images = ctx.images(None)?;
            let tmp = output.with_extension("tar.partial");
            let f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
            let res = images.export(
                &ctx.namespace,
                &names,
                std::io::BufWriter::with_capacity(1 << 20, f),
            );
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            std::fs::rename(&tmp, &output).with_context(|| format!("rename to {}", output.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Row {
    name: String,
    digest: String,
    media_type: String,
    /// Config digest of the host platform's manifest.
    id: Option<String>,
    /// Compressed size of config and layers.
    size: u64,
    created: String,
}

impl Row {
    fn of(images: &Images, i: ImageRecord) -> Row {
        let m = images.manifest_for_host(&i.digest, &i.media_type).ok();
        Row {
            id: m.as_ref().map(|m| m.config.digest.to_string()),
            size: m
                .as_ref()
                .map(|m| m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>())
                .unwrap_or(0),
            created: rfc3339(i.created),
            name: i.name,
            digest: i.digest.to_string(),
            media_type: i.media_type,
        }
    }
}

fn inspect(images: &Images, ctx: &Ctx, name: &str) -> anyhow::Result<serde_json::Value> {
    let img = images.lookup(&ctx.namespace, name)?;
    let manifest = images.manifest_for_host(&img.digest, &img.media_type)?;
    let (config_digest, _) = images.config(&img)?;
    let config: serde_json::Value = serde_json::from_slice(&images.store().content().read(&config_digest)?)?;
    let snapshots: Vec<serde_json::Value> = config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str())
        .map(|d| {
            let snap = images.store().snapshot(d).ok().flatten();
            serde_json::json!({
                "diff_id": d,
                "path": snap.as_ref().map(|s| s.path.display().to_string()),
                "size": snap.as_ref().map(|s| s.size),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "name": img.name,
        "digest": img.digest,
        "media_type": img.media_type,
        "id": config_digest,
        "created": rfc3339(img.created),
        "updated": rfc3339(img.updated),
        "labels": img.labels,
        "manifest": manifest,
        "config": config,
        "snapshots": snapshots,
    }))
}

fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        }),
        _ => anyhow::bail!("--platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"),
    }
}

fn rfc3339(nanos: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_flag() {
        let p = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        let err = parse_platform("amd64").unwrap_err().to_string();
        assert!(err.contains("\"amd64\""), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(110 * 1024 * 1024), "110.0 MiB");
    }
}
