//! What a runtime handler can do beyond the runc baseline, from its
//! `features` verb (runtime-spec features.md): the CRI reports it per
//! handler in Status, and a container that needs a feature its handler
//! lacks is refused at create instead of failing inside the handler.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;

use crate::handler::OciHandler;

/// The optional features berth asks a handler about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerFeatures {
    /// Recursive read-only bind mounts: the handler knows the `rro` mount
    /// option and the kernel has mount_setattr(2) for it.
    pub recursive_readonly: bool,
}

/// A handler's features, asked once per binary and arguments: Status is
/// polled every few seconds and must not fork a runtime each time.
pub fn of(handler: &OciHandler) -> HandlerFeatures {
    static CACHE: Mutex<BTreeMap<(PathBuf, Vec<String>), HandlerFeatures>> = Mutex::new(BTreeMap::new());
    let key = (handler.path.clone(), handler.args.clone());
    if let Some(f) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
        return *f;
    }
    let f = ask(handler);
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, f);
    f
}

/// Runs `features`; a handler without the verb (runc before 1.1) or with
/// an unreadable answer has none of the optional features.
fn ask(handler: &OciHandler) -> HandlerFeatures {
    let out = handler
        .command("features")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let doc = match out {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            tracing::info!(handler = %handler.name, status = %o.status, "runtime has no features verb: no optional features");
            return HandlerFeatures::default();
        }
        Err(e) => {
            tracing::warn!(handler = %handler.name, path = %handler.path.display(), "cannot run the runtime's features verb: {e}");
            return HandlerFeatures::default();
        }
    };
    let f = parse(&doc, kernel_has_mount_setattr());
    tracing::debug!(handler = %handler.name, ?f, "runtime features");
    f
}

fn parse(doc: &[u8], mount_setattr: bool) -> HandlerFeatures {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default, rename = "mountOptions")]
        mount_options: Vec<String>,
    }
    let doc: Doc = match serde_json::from_slice(doc) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("runtime features document is unreadable: {e}");
            return HandlerFeatures::default();
        }
    };
    HandlerFeatures {
        recursive_readonly: mount_setattr && doc.mount_options.iter().any(|o| o == "rro"),
    }
}

/// mount_setattr(2), which every runtime uses for `rro`, came with Linux
/// 5.12.
fn kernel_has_mount_setattr() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| release_at_least(&r, (5, 12)))
        .unwrap_or(false)
}

fn release_at_least(release: &str, want: (u32, u32)) -> Option<bool> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse::<u32>().ok()?;
    let minor = parts.next()?.parse::<u32>().ok()?;
    Some((major, minor) >= want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rro_needs_the_option_and_the_kernel() {
        let runc = br#"{"ociVersionMin":"1.0.0","mountOptions":["ro","rbind","rro","rw"]}"#;
        assert!(parse(runc, true).recursive_readonly);
        assert!(!parse(runc, false).recursive_readonly);
        assert!(!parse(br#"{"mountOptions":["ro","rbind"]}"#, true).recursive_readonly);
        assert!(!parse(br#"{}"#, true).recursive_readonly);
        assert!(!parse(b"usage: runc", true).recursive_readonly);
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert_eq!(release_at_least("6.13.7-cloud-amd64\n", (5, 12)), Some(true));
        assert_eq!(release_at_least("5.12.0", (5, 12)), Some(true));
        assert_eq!(release_at_least("5.10.0-28-amd64", (5, 12)), Some(false));
        assert_eq!(release_at_least("4.19.0", (5, 12)), Some(false));
        assert_eq!(release_at_least("weird", (5, 12)), None);
    }
}
