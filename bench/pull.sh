#!/usr/bin/env bash
# Pull benchmark: time `berth image pull` of the large test image from the
# local registry into a fresh store on tmpfs (this machine's root filesystem
# slows file creation after large deletes, which would measure ext4, not berth).
#
# Usage: bench/pull.sh [REFERENCE] [RUNS]
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
cleanup() { umount "$work" 2>/dev/null || true; rmdir "$work" 2>/dev/null || true; }
trap cleanup EXIT
mount -t tmpfs -o size=4g tmpfs "$work"
printf 'root = "%s/root"\nstate = "%s/state"\n[registry]\ncerts_dir = "%s/certs.d"\n' "$work" "$work" "$work" >"$work/config.toml"

# Sizes from the registry itself, so the figure does not trust berth's count.
manifest=$(skopeo inspect --tls-verify=false --raw "docker://$REF")
compressed=$(jq '[.layers[].size] | add' <<<"$manifest")
layers=$(jq '.layers | length' <<<"$manifest")

times=()
for i in $(seq "$RUNS"); do
  rm -rf "$work/root"
  start=$(date +%s%N)
  "$BERTH" --config "$work/config.toml" image pull -q "$REF" >/dev/null
  end=$(date +%s%N)
  times+=("$(( end - start ))")
done
unpacked=$(du -sb "$work/root/snapshots" | cut -f1)

printf '%s\n' "${times[@]}" | sort -n | awk -v c="$compressed" -v u="$unpacked" -v l="$layers" -v ref="$REF" -v n="$RUNS" '
  { t[NR] = $1 / 1e9 }
  END {
    med = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    printf "pull %s: %d layers, %.1f MB compressed, %.1f MB unpacked, %d runs\n", ref, l, c / 1e6, u / 1e6, n
    printf "  time    median %.3f s  min %.3f s  max %.3f s\n", med, t[1], t[NR]
    printf "  rate    %.1f MB/s compressed, %.1f MB/s unpacked (median)\n", c / 1e6 / med, u / 1e6 / med
  }'
