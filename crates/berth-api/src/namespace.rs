use std::fmt;
use std::str::FromStr;

/// A tenant: every image, pod and container belongs to exactly one.
///
/// Names follow containerd's rule (a DNS label-ish identifier, dots allowed),
/// so `k8s.io` and `default` are valid and nothing with a `/` ever is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "namespace {0:?} is invalid: use 1-76 characters of a-z, 0-9, '.', '-' and '_', starting and ending with a letter or digit"
)]
pub struct NamespaceError(pub String);

impl Namespace {
    /// The namespace of the CLI when none is given.
    pub const DEFAULT: &'static str = "default";
    /// The namespace of the CRI server, as containerd uses.
    pub const K8S: &'static str = "k8s.io";

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Namespace {
    type Err = NamespaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let b = s.as_bytes();
        let valid = !b.is_empty()
            && b.len() <= 76
            && ok_char(b[0])
            && ok_char(b[b.len() - 1])
            && b.iter().all(|&c| ok_char(c) || matches!(c, b'.' | b'-' | b'_'));
        if valid {
            Ok(Namespace(s.to_string()))
        } else {
            Err(NamespaceError(s.to_string()))
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_names() {
        for n in ["default", "k8s.io", "tenant-a", "a_b", "x"] {
            assert_eq!(n.parse::<Namespace>().unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_paths_and_odd_names() {
        for n in ["", "../x", "a/b", "Upper", "-lead", "trail.", "sp ace"] {
            assert_eq!(n.parse::<Namespace>(), Err(NamespaceError(n.to_string())));
        }
    }
}
