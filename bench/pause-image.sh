#!/usr/bin/env bash
# pause-image.sh - build a sandbox ("pause") image and push it to the test
# registry as ${BERTH_TEST_REGISTRY:-127.0.0.1:5123}/pause:3.9.
#
# containerd's CRI plugin holds every pod's namespaces with a pause container
# and pulls its sandbox_image for that; berth pins the namespaces as bind
# mounts and needs none. The benchmark must not reach the internet, so the
# pause image is built here: a static C program that sleeps until SIGINT or
# SIGTERM and reaps orphans (what the upstream pause does), as one layer,
# run as 65535:65535 like the upstream image.
#
# Usage: sudo bench/pause-image.sh        (idempotent: skips the push when the
#                                          registry already has pause:3.9)
# Needs: gcc with static glibc (libc6-dev), umoci, skopeo, curl; the test
# registry running (tests/fixtures/registry.sh start).
set -euo pipefail
REG=${BERTH_TEST_REGISTRY:-127.0.0.1:5123}
REF=pause:3.9

if curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$REG/v2/${REF%%:*}/manifests/${REF#*:}" 2>/dev/null && [ "${FORCE:-0}" != 1 ]; then
  echo "pause-image.sh: $REG/$REF already in the registry (FORCE=1 rebuilds)"
  exit 0
fi
for x in gcc umoci skopeo curl; do
  command -v "$x" >/dev/null || { echo "pause-image.sh: $x not found" >&2; exit 1; }
done

work=$(mktemp -d /tmp/berth-pause.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat >"$work/pause.c" <<'EOF'
/* The pod's sandbox process: holds the namespaces, reaps zombies when it is
 * a PID namespace's init, exits on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction q = {.sa_handler = quit}, r = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &q, NULL);
  sigaction(SIGTERM, &q, NULL);
  sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
EOF
gcc -static -Os -s -o "$work/pause" "$work/pause.c"

export SOURCE_DATE_EPOCH=1704067200
mkdir -p "$work/rootfs"
install -m 0755 "$work/pause" "$work/rootfs/pause"
touch -h -d @$SOURCE_DATE_EPOCH "$work/rootfs" "$work/rootfs/pause"
umoci --log error init --layout "$work/oci"
umoci --log error new --image "$work/oci:pause"
umoci --log error insert --history.created=2024-01-01T00:00:00Z --image "$work/oci:pause" "$work/rootfs" /
umoci --log error config --image "$work/oci:pause" --created=2024-01-01T00:00:00Z \
  --os linux --architecture amd64 --config.entrypoint /pause --config.user 65535:65535 --config.workingdir /
skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:pause" "docker://$REG/$REF"
echo "pause-image.sh: pushed $REG/$REF ($(stat -c %s "$work/pause") bytes static binary)"
