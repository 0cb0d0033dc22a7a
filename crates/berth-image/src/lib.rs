//! Images: pull, push, unpack, import/export.

pub mod unpack;
