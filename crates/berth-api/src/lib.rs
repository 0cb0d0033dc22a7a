//! Identifiers shared by every berth crate.
//!
//! They validate on construction so that a value of one of these types can be
//! put into a path or an SQL row without further checks.

mod digest;
mod namespace;

pub use digest::{Digest, DigestError};
pub use namespace::{Namespace, NamespaceError};
