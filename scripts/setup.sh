#!/bin/bash
# setup.sh - first command on a fresh Debian 12 machine (as root):
#   installs the dependencies, builds berth and installs it to /usr/local/bin, writes a
#   default /etc/berth/config.toml (if absent), starts the local test registry on
#   $BERTH_TEST_REGISTRY (default 127.0.0.1:5123), builds and pushes the test images,
#   then pulls busybox with berth and lists images.
# The registry is left running: tests/fixtures/registry.sh stop  stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (sudo $0)"; exit 1; }

REGISTRY=${BERTH_TEST_REGISTRY:-127.0.0.1:5123}
export BERTH_TEST_REGISTRY=$REGISTRY

scripts/install-deps.sh
for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
  if [ -x "$d/cargo" ]; then PATH=$d:$PATH; break; fi
done

say "building berth (release)"
cargo build --release -p berth
# The per-container monitor, linked statically: no shared libraries to map
# and relocate in every one of them (see BENCHMARKS.md, monitor memory).
# Not position-independent either: nothing is relocated at start, so no page
# of it is written (and made private) just to run.
cargo rustc --release -p berth --bin berth-monitor -- -C target-feature=+crt-static -C relocation-model=static
install -D -m 0755 target/release/berth /usr/local/bin/berth
install -D -m 0755 target/release/berth-monitor /usr/local/bin/berth-monitor
# The embedded OCI runtime as its own small binary (exec'd for every
# container operation): berth uses it when it sits next to berth.
install -D -m 0755 target/release/berth-oci /usr/local/bin/berth-oci
say "installed /usr/local/bin/berth"

if [ ! -e /etc/berth/config.toml ]; then
  install -d -m 0755 /etc/berth /etc/berth/certs.d
  cat >/etc/berth/config.toml <<'EOF'
# berth configuration (written by scripts/setup.sh; edit freely, it is not overwritten).

# Images, snapshots, content and metadata.
root = "/var/lib/berth"
# Sockets, pinned namespaces, monitors: gone after a reboot.
state = "/run/berth"

[registry]
# Per-registry hosts.toml files, containerd's format: <dir>/<host[:port]>/hosts.toml
certs_dir = "/etc/berth/certs.d"
EOF
  say "wrote /etc/berth/config.toml"
fi

# The test registry speaks plain HTTP.  berth already assumes that for a loopback
# host with a port; the file says it explicitly where berth looks for host settings.
hosts=/etc/berth/certs.d/$REGISTRY/hosts.toml
if [ ! -e "$hosts" ]; then
  install -d -m 0755 "$(dirname "$hosts")"
  cat >"$hosts" <<EOF
# local test registry (tests/fixtures/registry.sh): plain HTTP on loopback
server = "http://$REGISTRY"
EOF
  say "wrote $hosts"
fi

# Pod networking: Debian's CNI plugins (installed above) and, when no
# network is configured yet, berth's default one: bridge berth0 on a private
# /16 that keeps clear of containerd's and podman's 10.88.0.0/16.
if ! ls /etc/cni/net.d/*.conflist /etc/cni/net.d/*.conf /etc/cni/net.d/*.json >/dev/null 2>&1; then
  install -d -m 0755 /etc/cni/net.d
  cat >/etc/cni/net.d/10-berth.conflist <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "berth",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "berth0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.89.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
  say "wrote /etc/cni/net.d/10-berth.conflist (bridge berth0, 10.89.0.0/16)"
fi

tests/fixtures/registry.sh start
tests/fixtures/make-images.sh
say "the test registry keeps running on http://$REGISTRY; stop it with: tests/fixtures/registry.sh stop"

berth image pull "$REGISTRY/busybox:latest"
berth image ls
# berth's main job: a pod, no daemon. The app's output streams here and the
# command exits with the app's exit code.
berth run --rm "$REGISTRY/busybox:latest" -- sh -c 'echo "hello from pod $(hostname) at $(hostname -i), pid $$, as $(id -un)"'
say "done. (test registry still running on http://$REGISTRY: tests/fixtures/registry.sh stop)"
