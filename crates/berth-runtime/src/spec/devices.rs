//! Device nodes and the device cgroup: deny everything, then allow the
//! nodes every container needs and the ones the request maps in.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::SpecError;
use super::mounts::clean_absolute;
use crate::device_filter::cgroup_rule as rule;
use crate::model::Device;

pub struct DevicePlan {
    /// Nodes to create beyond the runtime's own defaults.
    pub nodes: Vec<LinuxDevice>,
    pub cgroup_rules: Vec<LinuxDeviceCgroup>,
}

/// (type, major, minor) allowed rwm to every container: null, zero, full,
/// random, urandom, tty, console, ptmx and the pts slaves (136:*).
const DEFAULT_ALLOWED: [(LinuxDeviceType, Option<i64>, Option<i64>); 9] = [
    (LinuxDeviceType::C, Some(1), Some(3)),
    (LinuxDeviceType::C, Some(1), Some(5)),
    (LinuxDeviceType::C, Some(1), Some(7)),
    (LinuxDeviceType::C, Some(1), Some(8)),
    (LinuxDeviceType::C, Some(1), Some(9)),
    (LinuxDeviceType::C, Some(5), Some(0)),
    (LinuxDeviceType::C, Some(5), Some(1)),
    (LinuxDeviceType::C, Some(5), Some(2)),
    (LinuxDeviceType::C, Some(136), None),
];

pub fn plan(requested: &[Device], privileged: bool) -> Result<DevicePlan, SpecError> {
    if privileged {
        let mut nodes = Vec::new();
        host_devices(Path::new("/dev"), &mut nodes);
        return Ok(DevicePlan {
            nodes,
            cgroup_rules: vec![rule(true, LinuxDeviceType::A, None, None, "rwm")],
        });
    }
    let mut rules = vec![
        rule(false, LinuxDeviceType::A, None, None, "rwm"),
        // mknod of any node is harmless while access stays denied.
        rule(true, LinuxDeviceType::C, None, None, "m"),
        rule(true, LinuxDeviceType::B, None, None, "m"),
    ];
    rules.extend(
        DEFAULT_ALLOWED
            .iter()
            .map(|(t, maj, min)| rule(true, *t, *maj, *min, "rwm")),
    );
    let mut nodes = Vec::with_capacity(requested.len());
    for dev in requested {
        let (node, access) = requested_device(dev)?;
        rules.push(rule(
            true,
            node.typ(),
            Some(node.major()),
            Some(node.minor()),
            &access,
        ));
        nodes.push(node);
    }
    Ok(DevicePlan {
        nodes,
        cgroup_rules: rules,
    })
}

fn requested_device(dev: &Device) -> Result<(LinuxDevice, String), SpecError> {
    let perms = if dev.permissions.is_empty() {
        "rwm"
    } else {
        dev.permissions.as_str()
    };
    if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(SpecError::BadDevicePermissions {
            path: dev.host_path.clone(),
            permissions: dev.permissions.clone(),
        });
    }
    let container_path = clean_absolute(&dev.container_path).ok_or_else(|| SpecError::BadDevicePath {
        path: dev.container_path.clone(),
    })?;
    let meta = std::fs::metadata(&dev.host_path).map_err(|source| SpecError::DeviceStat {
        path: dev.host_path.clone(),
        source,
    })?;
    let node = device_node(&container_path, &meta).ok_or_else(|| SpecError::NotADevice {
        path: dev.host_path.clone(),
    })?;
    Ok((node, perms.to_string()))
}

fn device_node(container_path: &Path, meta: &Metadata) -> Option<LinuxDevice> {
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let mut node = LinuxDevice::default();
    node.set_path(container_path.to_path_buf());
    node.set_typ(typ);
    node.set_major(i64::from(rustix::fs::major(rdev)));
    node.set_minor(i64::from(rustix::fs::minor(rdev)));
    node.set_file_mode(Some(meta.mode() & 0o7777));
    node.set_uid(Some(meta.uid()));
    node.set_gid(Some(meta.gid()));
    Some(node)
}

/// Every device node of the host, as containerd gives privileged
/// containers; the runtime's own mounts (pts, shm, mqueue) are skipped.
fn host_devices(dir: &Path, out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let name = entry.file_name();
            let skip = matches!(
                name.to_str(),
                Some("pts" | "shm" | "mqueue" | "fd" | ".lxc" | ".lxd-mounts" | ".udev")
            );
            if !skip {
                host_devices(&path, out);
            }
            continue;
        }
        if path == Path::new("/dev/console") {
            continue;
        }
        if let Some(node) = device_node(&path, &meta) {
            out.push(node);
        }
    }
}
