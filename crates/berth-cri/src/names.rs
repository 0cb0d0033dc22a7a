//! How CRI identities become berth names.
//!
//! berth keeps one pod name per namespace, and validates it as a DNS
//! subdomain; CRI pods are unique per (name, namespace, uid, attempt), and
//! kubelet's names need not be valid for berth (two Kubernetes namespaces may
//! both hold "web"). So a CRI pod's berth name is
//! `<name, made DNS-safe and cut to 40>-<12 hex of SHA-256 over the four>`:
//! valid, stable for the same four values (so a retried RunPodSandbox
//! collides and answers AlreadyExists), and unique across them. The CRI name
//! itself travels in `PodConfig::k8s_name` (what CNI plugins see as
//! `K8S_POD_NAME`) and in the annotation [`POD_NAME_ANNOTATION`], which the
//! CRI never sees. A container's berth name is `<name>_<attempt>`, since kubelet
//! creates attempt n+1 while attempt n still exists.

use sha2::{Digest, Sha256};

/// Where a CRI pod's metadata name is kept; hidden from CRI answers.
pub const POD_NAME_ANNOTATION: &str = "io.berth.cri.pod-name";

pub fn pod_name(name: &str, namespace: &str, uid: &str, attempt: u32) -> String {
    let mut h = Sha256::new();
    for part in [name, namespace, uid, &attempt.to_string()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = hex::encode(h.finalize());
    let mut safe: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    safe = safe.trim_matches('-').to_string();
    if safe.is_empty() {
        safe.push_str("pod");
    }
    format!("{safe}-{}", &digest[..12])
}

pub fn container_name(name: &str, attempt: u32) -> String {
    format!("{name}_{attempt}")
}

/// The CRI name back from a container's berth name.
pub fn container_cri_name(stored: &str, attempt: u32) -> &str {
    stored.strip_suffix(&format!("_{attempt}")).unwrap_or(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_valid_stable_and_unique() {
        let a = pod_name("Web_Server.1", "default", "uid-1", 0);
        assert_eq!(a, pod_name("Web_Server.1", "default", "uid-1", 0));
        assert!(a.starts_with("web-server-1-"), "{a}");
        assert!(a.len() <= 63);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        assert_ne!(a, pod_name("Web_Server.1", "other", "uid-1", 0));
        assert_ne!(a, pod_name("Web_Server.1", "default", "uid-1", 1));
        assert_ne!(a, pod_name("Web_Server.1", "default", "uid-2", 0));
        assert!(pod_name("___", "n", "u", 0).starts_with("pod-"));
        assert!(pod_name(&"x".repeat(300), "n", "u", 0).len() <= 63);
    }

    #[test]
    fn container_names_round_trip() {
        assert_eq!(container_cri_name(&container_name("app_1", 3), 3), "app_1");
    }
}
