//! An initramfs written here: the kernel's "newc" cpio format
//! (Documentation/driver-api/early-userspace/buffer-format.rst), optionally
//! gzip'd. It is small (busybox, a few modules, scripts), so it is built in
//! memory and written in one go.
//!
//! The kernel's unpacker creates no missing parent directories, so every
//! parent is emitted before its children; entries are owned by root.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// How the archive is written. The kernel takes both; under TCG the
/// kernel's inflate costs more guest time than QEMU's read of the bigger
/// file (see the README for the measurement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

#[derive(Debug, Default)]
pub struct Initramfs {
    data: Vec<u8>,
    dirs: BTreeSet<String>,
    names: BTreeSet<String>,
    next_ino: u32,
}

impl Initramfs {
    pub fn new() -> Initramfs {
        Initramfs {
            next_ino: 1,
            ..Default::default()
        }
    }

    /// A directory (and its missing parents, mode 0755).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self> {
        let path = clean(path)?;
        self.parents(&path)?;
        // a directory already made as some entry's parent keeps its mode
        if !self.dirs.contains(&path) {
            self.claim(&path)?;
            self.dirs.insert(path.clone());
            self.entry(&path, S_IFDIR | (mode & 0o7777), 2, &[]);
        }
        Ok(self)
    }

    /// A regular file with `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<&mut Self> {
        let path = clean(path)?;
        self.parents(&path)?;
        self.claim(&path)?;
        self.entry(&path, S_IFREG | (mode & 0o7777), 1, data);
        Ok(self)
    }

    /// A regular file with the contents of the host file `src`.
    pub fn file_from(&mut self, path: &str, mode: u32, src: &Path) -> Result<&mut Self> {
        let data = std::fs::read(src).map_err(|e| Error::io("reading", src, e))?;
        self.file(path, mode, &data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let path = clean(path)?;
        self.parents(&path)?;
        self.claim(&path)?;
        self.entry(&path, S_IFLNK | 0o777, 1, target.as_bytes());
        Ok(self)
    }

    /// The archive with its trailer, compressed as asked.
    pub fn finish(mut self, compression: Compression) -> Vec<u8> {
        self.next_ino = 0;
        self.header("TRAILER!!!", 0, 1, 0);
        match compression {
            Compression::None => self.data,
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&self.data).expect("writing to memory");
                gz.finish().expect("writing to memory")
            }
        }
    }

    /// Writes the archive to `dest`.
    pub fn write(self, dest: &Path, compression: Compression) -> Result<()> {
        let bytes = self.finish(compression);
        std::fs::write(dest, bytes).map_err(|e| Error::io("writing", dest, e))
    }

    fn parents(&mut self, path: &str) -> Result<()> {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let parent = &path[..at + i];
            if !self.dirs.contains(parent) {
                let parent = parent.to_owned();
                if self.names.contains(&parent) {
                    return Err(Error::Initramfs {
                        path: path.to_owned(),
                        what: format!("its parent {parent} is not a directory"),
                    });
                }
                self.dirs.insert(parent.clone());
                self.names.insert(parent.clone());
                self.entry(&parent, S_IFDIR | 0o755, 2, &[]);
            }
            at += i + 1;
        }
        Ok(())
    }

    fn claim(&mut self, path: &str) -> Result<()> {
        if self.names.insert(path.to_owned()) {
            Ok(())
        } else {
            Err(Error::Initramfs {
                path: path.to_owned(),
                what: "added twice".into(),
            })
        }
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, data: &[u8]) {
        self.header(path, mode, nlink, data.len());
        self.data.extend_from_slice(data);
        self.pad();
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: usize) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields: [u32; 13] = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size as u32,
            0,
            0, // dev major, minor
            0,
            0,                     // rdev major, minor
            name.len() as u32 + 1, // with its NUL
            0,                     // check (newc, not crc)
        ];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            write!(self.data, "{f:08X}").expect("writing to memory");
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
    }

    /// Header+name and data each end on a 4-byte boundary.
    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
}

/// Archive paths are relative ("bin/busybox"); a leading '/' is dropped,
/// empty, `.` and `..` components are refused.
fn clean(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Error::Initramfs {
            path: path.to_owned(),
            what: "not a plain relative path".into(),
        });
    }
    Ok(p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a newc archive back: (name, mode, data) per entry.
    fn entries(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let total = b.len();
        loop {
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = String::from_utf8(b[110..110 + namesize - 1].to_vec()).unwrap();
            let mut off = 110 + namesize;
            off = off.next_multiple_of(4);
            let data = b[off..off + size].to_vec();
            off = (off + size).next_multiple_of(4);
            assert_eq!((total - b.len() + off) % 4, 0);
            b = &b[off..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn parents_come_first_and_data_round_trips() {
        let mut i = Initramfs::new();
        i.file("/bin/busybox", 0o755, b"elf").unwrap();
        i.symlink("bin/sh", "busybox").unwrap();
        i.file("lib/modules/kernel/fs/fuse.ko", 0o644, b"12345").unwrap();
        i.dir("proc", 0o555).unwrap();
        let e = entries(&i.finish(Compression::None));
        let names: Vec<_> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "lib",
                "lib/modules",
                "lib/modules/kernel",
                "lib/modules/kernel/fs",
                "lib/modules/kernel/fs/fuse.ko",
                "proc"
            ]
        );
        assert_eq!(e[1].1, S_IFREG | 0o755);
        assert_eq!(e[1].2, b"elf");
        assert_eq!(e[2].1, S_IFLNK | 0o777);
        assert_eq!(e[2].2, b"busybox");
        assert_eq!(e[7].2, b"12345");
        assert_eq!(e[8].1, S_IFDIR | 0o555);
    }

    #[test]
    fn gzip_wraps_the_same_archive() {
        let mk = || {
            let mut i = Initramfs::new();
            i.file("init", 0o755, b"#!/bin/sh\n").unwrap();
            i
        };
        let plain = mk().finish(Compression::None);
        let gz = mk().finish(Compression::Gzip);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, plain);
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused_by_name() {
        let mut i = Initramfs::new();
        assert!(i.file("../etc/passwd", 0o644, b"").is_err());
        assert!(i.file("", 0o644, b"").is_err());
        i.file("init", 0o755, b"").unwrap();
        let e = i.file("init", 0o755, b"").unwrap_err().to_string();
        assert!(e.contains("init") && e.contains("twice"), "{e}");
        let e = i.file("init/x", 0o755, b"").unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }
}
