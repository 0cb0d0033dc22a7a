//! The QEMU command line of a guest: `-M microvm` with ACPI (this kernel
//! finds virtio-mmio devices only through ACPI, and `poweroff -f` ends QEMU
//! only with it), guest RAM in a shared memfd (vhost-user devices such as
//! virtiofsd map it; without it the guest hangs at the first virtio-fs
//! request), no default devices, the serial console on stdio, and
//! `-no-reboot` so a guest reset or panic ends QEMU instead of looping.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// Software emulation. The default for now: /dev/kvm on the build
    /// machines is PVM, on which stock kernels do not boot.
    #[default]
    Tcg,
    /// Hardware virtualization (a real /dev/kvm).
    Kvm,
    // `Auto` (KVM when it works, else TCG) needs a probe boot: a later change.
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Accel, String> {
        match s {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            _ => Err(format!("accelerator {s:?}: expected tcg or kvm")),
        }
    }
}

/// Kernel arguments every guest gets. The timing ones skip the TSC and
/// delay-loop calibration, which take seconds under TCG; `panic=-1` makes a
/// panicking guest reboot at once, which `-no-reboot` turns into QEMU's exit.
pub const BASE_APPEND: &[&str] = &[
    "console=ttyS0",
    "lpj=5000000",
    "tsc_early_khz=2600000",
    "tsc=reliable",
    "panic=-1",
];

/// A virtio-fs device: the vhost-user socket of its virtiofsd and the tag
/// the guest mounts it by.
#[derive(Debug, Clone)]
pub struct VirtioFs {
    pub socket: PathBuf,
    pub tag: String,
}

#[derive(Debug, Clone)]
pub struct Qemu {
    pub binary: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Arguments after [`BASE_APPEND`].
    pub append: Vec<String>,
    pub virtio_fs: Vec<VirtioFs>,
    /// Raw disk images, attached as virtio-blk devices (vda, vdb, … in
    /// order; the guest needs the virtio_blk module).
    pub disks: Vec<PathBuf>,
    /// Appended verbatim, last.
    pub extra_args: Vec<OsString>,
}

impl Qemu {
    pub fn new(kernel: &Path, initrd: &Path) -> Qemu {
        Qemu {
            binary: "qemu-system-x86_64".into(),
            accel: Accel::default(),
            memory_mib: 512,
            cpus: 1,
            kernel: kernel.to_owned(),
            initrd: initrd.to_owned(),
            append: Vec::new(),
            virtio_fs: Vec::new(),
            disks: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    /// The kernel command line.
    pub fn kernel_cmdline(&self) -> String {
        let mut a: Vec<&str> = BASE_APPEND.to_vec();
        a.extend(self.append.iter().map(String::as_str));
        a.join(" ")
    }

    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        let mem = format!("{}M", self.memory_mib);
        // microvm's memory-backend property replaces -numa for the shared
        // memfd; its size must equal -m.
        push("-M");
        push("microvm,acpi=on,memory-backend=mem");
        push("-accel");
        push(self.accel.as_str());
        push("-cpu");
        push(match self.accel {
            Accel::Tcg => "max",
            Accel::Kvm => "host",
        });
        push("-m");
        push(&mem);
        push("-smp");
        push(&self.cpus.to_string());
        push("-object");
        push(&format!("memory-backend-memfd,id=mem,size={mem},share=on"));
        for s in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
            push(s);
        }
        push("-serial");
        push("stdio");
        for (i, fs) in self.virtio_fs.iter().enumerate() {
            let mut chardev = OsString::from(format!("socket,id=vfs{i},path="));
            chardev.push(&fs.socket);
            a.push("-chardev".into());
            a.push(chardev);
            a.push("-device".into());
            a.push(format!("vhost-user-fs-device,chardev=vfs{i},tag={}", fs.tag).into());
        }
        for (i, disk) in self.disks.iter().enumerate() {
            // cache=unsafe: scratch disks whose contents do not outlive the
            // guest need no flushes to the host.
            let mut drive = OsString::from(format!("id=disk{i},format=raw,if=none,cache=unsafe,file="));
            drive.push(disk);
            a.push("-drive".into());
            a.push(drive);
            a.push("-device".into());
            a.push(format!("virtio-blk-device,drive=disk{i}").into());
        }
        a.push("-kernel".into());
        a.push(self.kernel.clone().into());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into());
        a.push("-append".into());
        a.push(self.kernel_cmdline().into());
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// The command, stdio untouched; the caller pipes the console.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(self.args());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_has_the_shared_memfd_and_the_virtio_fs_device() {
        let mut q = Qemu::new(Path::new("/k/vmlinuz"), Path::new("/t/initrd"));
        q.memory_mib = 2048;
        q.cpus = 2;
        q.append.push("cgroup_no_v1=all".into());
        q.virtio_fs.push(VirtioFs {
            socket: "/t/vfs.sock".into(),
            tag: "host".into(),
        });
        q.disks.push("/t/scratch.img".into());
        let args: Vec<String> = q.args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let line = args.join(" ");
        assert!(
            line.starts_with("-M microvm,acpi=on,memory-backend=mem -accel tcg -cpu max -m 2048M -smp 2 "),
            "{line}"
        );
        assert!(
            line.contains("-object memory-backend-memfd,id=mem,size=2048M,share=on"),
            "{line}"
        );
        assert!(
            line.contains(
                "-chardev socket,id=vfs0,path=/t/vfs.sock -device vhost-user-fs-device,chardev=vfs0,tag=host"
            ),
            "{line}"
        );
        assert!(
            line.contains("-drive id=disk0,format=raw,if=none,cache=unsafe,file=/t/scratch.img -device virtio-blk-device,drive=disk0"),
            "{line}"
        );
        assert_eq!(args[args.len() - 2], "-append");
        assert!(args.last().unwrap().starts_with("console=ttyS0 "));
        assert!(args.last().unwrap().ends_with(" panic=-1 cgroup_no_v1=all"));
        assert!(line.contains("-no-reboot"));
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        assert!("auto".parse::<Accel>().is_err());
    }
}
