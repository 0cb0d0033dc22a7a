#!/bin/bash
# install-deps.sh - install what berth's build and tests need on Debian 12 (as root).
#
# Debian packages: the build (compiler, pkg-config, protoc, libseccomp), the test
# fixtures (busybox-static, umoci, skopeo, docker-registry, openssl, zstd, jq, curl),
# and the peers the tests compare with or call (runc, crun, CNI plugins, iproute2), and
# the cgroup v2 test guest (qemu-system-x86, kmod; scripts/test-cgroup-v2.sh).
# Rust: used as found (~/.cargo/bin or PATH); only when cargo is missing is a toolchain
# installed, through rustup.  cargo-nextest is installed from crates.io when missing;
# scripts/test.sh falls back to `cargo test` without it.  virtiofsd also comes from crates.io.
# The guest kernel (Debian's cloud kernel) is unpacked into /usr/local/lib/berth/guest-kernel
# ($BERTH_GUEST_KERNEL_DIR), never installed as this host's kernel.  Steps already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install-deps.sh: $*" >&2; }

PACKAGES=(
  build-essential pkg-config protobuf-compiler libseccomp-dev # build
  busybox-static skopeo umoci docker-registry                 # test images and registry
  openssl zstd jq curl ca-certificates                        # make-images.sh helpers
  runc crun containernetworking-plugins iproute2 iptables     # runtimes, CNI, netns, portmap
  hyperfine                                                   # benchmarks
  qemu-system-x86 kmod libcap-ng-dev                          # the cgroup v2 test guest (virtiofsd's build needs libcap-ng)
  criu                                                        # checkpoint/restore (CheckpointContainer, berth oci checkpoint/restore)
)

[ "$(id -u)" = 0 ] || { say "run as root (sudo $0)"; exit 1; }

export DEBIAN_FRONTEND=noninteractive
say "apt-get install ${PACKAGES[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

# --- Rust -------------------------------------------------------------------
for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
  if [ -x "$d/cargo" ]; then PATH=$d:$PATH; break; fi
done
need=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)

if ! command -v cargo >/dev/null; then
  if command -v rustup >/dev/null; then
    say "cargo missing; installing the stable toolchain with rustup"
    rustup toolchain install stable --profile minimal --component rustfmt,clippy
    rustup default stable
  elif curl -fsS --max-time 10 -o /dev/null https://sh.rustup.rs 2>/dev/null; then
    say "cargo missing; installing rustup and the stable toolchain from https://sh.rustup.rs"
    curl -fsSL --proto '=https' --tlsv1.2 https://sh.rustup.rs |
      sh -s -- -y --profile minimal --component rustfmt,clippy
    PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
  else
    say "cargo is not installed and https://sh.rustup.rs cannot be reached from here."
    say "Install Rust ${need:-stable} or newer (with rustfmt and clippy) by another route,"
    say "e.g. copy a rustup installation into ~/.cargo and ~/.rustup, then run this again."
    say "(Debian 12's own rustc is 1.63, too old for this edition-2024 workspace.)"
    exit 1
  fi
fi

have=$(rustc --version | awk '{print $2}')
if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  say "rustc $have is older than the workspace's rust-version $need"
  if command -v rustup >/dev/null; then rustup update stable; else exit 1; fi
fi

# rustfmt and clippy serve scripts/test.sh --ci
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy || say "warning: could not add rustfmt/clippy; test.sh --ci needs them"
  else
    say "warning: rustfmt or clippy missing and no rustup to add them; test.sh --ci needs them"
  fi
fi

if cargo nextest --version >/dev/null 2>&1; then
  say "cargo-nextest present: $(cargo nextest --version 2>/dev/null | head -n1)"
else
  say "installing cargo-nextest from crates.io"
  cargo install cargo-nextest --locked ||
    say "warning: cargo-nextest did not install; scripts/test.sh will use cargo test"
fi

# virtiofsd shares the host's root with the cgroup v2 test guest (scripts/test-cgroup-v2.sh)
# and later with pod VMs; Debian 12 does not package it.
if command -v virtiofsd >/dev/null; then
  say "virtiofsd present: $(virtiofsd --version 2>/dev/null | head -n1)"
else
  say "installing virtiofsd from crates.io"
  cargo install virtiofsd --locked
fi

# --- CRIU -------------------------------------------------------------------------
# Debian 12's criu 3.17 cannot run at all on kernels >= 6.13: they split the vDSO's
# data pages into [vvar] and [vvar_vclock], and 3.17's kernel feature detection
# (kerndat, before any command, even `criu check`) stops at "vdso: Unexpected rt vDSO
# area bounds"; no option skips it (CRIU 4.1 learned the new layout).  No newer CRIU
# comes from the package archive here, so on such a kernel checkpointing is
# unavailable: CheckpointContainer says so, and its test skips naming the reason.
if criu check >/dev/null 2>&1; then
  say "criu works: $(criu --version | head -n1)"
else
  say "warning: 'criu check' fails on kernel $(uname -r): checkpoint/restore unavailable ($(criu check 2>&1 | grep -m1 -o 'Unexpected rt vDSO area bounds' || echo 'see criu check'))"
fi

# --- guest kernel -----------------------------------------------------------------
# Debian's cloud kernel, unpacked into a directory of berth's own: it boots the test
# guest and pod VMs and is never installed as this host's kernel.  The package is the
# one linux-image-cloud-amd64 depends on today; it ships no modules.dep, so depmod
# writes one against the unpacked tree.
GUEST_KERNEL_DIR=${BERTH_GUEST_KERNEL_DIR:-/usr/local/lib/berth/guest-kernel}
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
  sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
if [ -z "$kpkg" ]; then
  say "could not resolve the package linux-image-cloud-amd64 depends on"
  exit 1
fi
kver=${kpkg#linux-image-}
if [ -f "$GUEST_KERNEL_DIR/boot/vmlinuz-$kver" ] && [ -f "$GUEST_KERNEL_DIR/lib/modules/$kver/modules.dep" ]; then
  say "guest kernel $kver present in $GUEST_KERNEL_DIR"
else
  say "guest kernel: $kpkg into $GUEST_KERNEL_DIR"
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt-get download fetches as user _apt
  (cd "$tmp" && apt-get download "$kpkg")
  mkdir -p "$GUEST_KERNEL_DIR"
  dpkg-deb -x "$tmp"/"$kpkg"_*.deb "$GUEST_KERNEL_DIR"
  rm -rf "$tmp"
  depmod -b "$GUEST_KERNEL_DIR" "$kver"
fi

say "done: $(rustc --version), $(cargo --version)"
