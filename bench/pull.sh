#!/usr/bin/env bash
# Pull benchmark: time `berth image pull` of the large test image from the
# local registry into a fresh store on tmpfs (this machine's root filesystem
# slows file creation after large deletes, which would measure ext4, not
# berth). When containerd is installed (Debian's `containerd`), the same pull
# with unpack (`ctr image pull`, overlayfs snapshotter) runs alternately with
# berth's, each into a fresh root, and the ratio is printed.
#
# Usage: sudo bench/pull.sh [REFERENCE] [RUNS]
#   REFERENCE  default $BERTH_TEST_REGISTRY/big:latest (127.0.0.1:5123/big:latest)
#   RUNS       default 5
# Needs: a release build (cargo build --release -p berth), the test registry
# running with the test images (scripts/test.sh or tests/fixtures/*.sh), root.
set -euo pipefail
cd "$(dirname "$0")/.."
REG=${BERTH_TEST_REGISTRY:-127.0.0.1:5123}
REF=${1:-$REG/big:latest}
RUNS=${2:-5}
BERTH=${BERTH:-target/release/berth}
[ -x "$BERTH" ] || { echo "build first: cargo build --release -p berth" >&2; exit 1; }

work=$(mktemp -d /tmp/berth-bench-pull.XXXXXX)
ctrd_pid=
stop_containerd() {
  if [ -n "$ctrd_pid" ]; then kill "$ctrd_pid" 2>/dev/null || true; wait "$ctrd_pid" 2>/dev/null || true; ctrd_pid=; fi
  # containerd leaves its snapshot mounts and runtime dirs behind on kill
  { grep -o " $work/[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount "$m" || true; done
}
cleanup() { stop_containerd; umount "$work" || true; rmdir "$work" || true; }
trap cleanup EXIT
mount -t tmpfs -o size=6g tmpfs "$work"
printf 'root = "%s/root"\nstate = "%s/state"\n[registry]\ncerts_dir = "%s/certs.d"\n' "$work" "$work" "$work" >"$work/config.toml"

# Sizes from the registry itself, so the figure does not trust berth's count.
manifest=$(skopeo inspect --tls-verify=false --raw "docker://$REF")
compressed=$(jq '[.layers[].size] | add' <<<"$manifest")
layers=$(jq '.layers | length' <<<"$manifest")

now() { date +%s%N; }

berth_run() {
  rm -rf "$work/root"
  local start end
  start=$(now)
  "$BERTH" --config "$work/config.toml" image pull -q "$REF" >/dev/null
  end=$(now)
  echo $((end - start))
}

have_containerd=0
command -v containerd >/dev/null && command -v ctr >/dev/null && have_containerd=1
containerd_run() {
  local c=$work/containerd
  rm -rf "$c"; mkdir -p "$c"
  cat >"$c/config.toml" <<CFG
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
CFG
  containerd --config "$c/config.toml" >"$c/log" 2>&1 &
  ctrd_pid=$!
  for _ in $(seq 100); do [ -S "$c/containerd.sock" ] && ctr -a "$c/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.05; done
  local start end
  start=$(now)
  ctr -a "$c/containerd.sock" -n bench image pull --plain-http "$REF" >/dev/null
  end=$(now)
  stop_containerd
  echo $((end - start))
}

berth_times=() ctrd_times=()
for _ in $(seq "$RUNS"); do
  berth_times+=("$(berth_run)")
  [ "$have_containerd" = 1 ] && ctrd_times+=("$(containerd_run)")
done
unpacked=$(du -sb "$work/root/snapshots" | cut -f1)

stats() { # name times... -> "name median min max" in seconds
  local name=$1; shift
  printf '%s\n' "$@" | sort -n | awk -v name="$name" '
    { t[NR] = $1 / 1e9 }
    END { med = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
          printf "%s %.3f %.3f %.3f\n", name, med, t[1], t[NR] }'
}

echo "pull $REF: $layers layers, $((compressed / 1000000)) MB compressed, $((unpacked / 1000000)) MB unpacked, $RUNS runs each, tmpfs, $(date -u +%F)"
read -r _ bmed bmin bmax < <(stats berth "${berth_times[@]}")
awk -v m="$bmed" -v lo="$bmin" -v hi="$bmax" -v c="$compressed" -v u="$unpacked" 'BEGIN {
  printf "  berth       median %.3f s  min %.3f s  max %.3f s   %.1f MB/s compressed, %.1f MB/s unpacked\n", m, lo, hi, c / 1e6 / m, u / 1e6 / m }'
if [ "$have_containerd" = 1 ]; then
  read -r _ cmed cmin cmax < <(stats containerd "${ctrd_times[@]}")
  awk -v m="$cmed" -v lo="$cmin" -v hi="$cmax" -v c="$compressed" -v b="$bmed" -v v="$(containerd --version | awk '{print $3}')" 'BEGIN {
    printf "  containerd  median %.3f s  min %.3f s  max %.3f s   %.1f MB/s compressed  (containerd %s, ctr pull)\n", m, lo, hi, c / 1e6 / m, v
    printf "  ratio berth/containerd (medians): %.2f\n", b / m }'
fi
