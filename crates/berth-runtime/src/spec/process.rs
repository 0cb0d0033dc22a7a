//! The container's command line, environment and working directory, with
//! Kubernetes' rules for combining the request with the image.

use super::SpecError;
use crate::model::{ContainerConfig, ImageRun};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// command replaces ENTRYPOINT and, unless args are given too, drops CMD;
/// args alone replace CMD after the image's ENTRYPOINT.
pub fn args(ctr: &ContainerConfig, image: &ImageRun) -> Result<Vec<String>, SpecError> {
    let (head, tail) = match (ctr.command.is_empty(), ctr.args.is_empty()) {
        (false, _) => (&ctr.command, &ctr.args),
        (true, false) => (&image.entrypoint, &ctr.args),
        (true, true) => (&image.entrypoint, &image.cmd),
    };
    let argv: Vec<String> = head.iter().chain(tail).cloned().collect();
    if argv.is_empty() {
        return Err(SpecError::NoCommand {
            container: ctr.name.clone(),
        });
    }
    Ok(argv)
}

/// PATH default, HOSTNAME, then the image's and the request's variables;
/// a later value replaces an earlier one of the same key in place, and a
/// bare `KEY` unsets it.
pub fn env(image: &ImageRun, ctr: &ContainerConfig, hostname: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![DEFAULT_PATH.to_string(), format!("HOSTNAME={hostname}")];
    for entry in image.env.iter().chain(&ctr.env) {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        let pos = out
            .iter()
            .position(|e| e.split_once('=').is_some_and(|(k, _)| k == key));
        match (pos, entry.contains('=')) {
            (Some(i), true) => out[i] = entry.clone(),
            (Some(i), false) => {
                out.remove(i);
            }
            (None, true) => out.push(entry.clone()),
            (None, false) => {}
        }
    }
    out
}

pub fn cwd(ctr: &ContainerConfig, image: &ImageRun) -> Result<String, SpecError> {
    let dir = ctr
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .or(image.working_dir.as_deref().filter(|d| !d.is_empty()))
        .unwrap_or("/");
    if !dir.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir {
            container: ctr.name.clone(),
            dir: dir.to_string(),
        });
    }
    Ok(dir.to_string())
}
