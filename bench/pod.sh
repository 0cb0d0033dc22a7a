#!/usr/bin/env bash
# Pod benchmark, no daemon: the time of `berth run --rm IMAGE -- /bin/true`
# (pod start with pinned namespaces and cgroup, one container created by the
# monitor through the handler, started, exited, pod removed) on the embedded
# handler and on runc; then the RSS of the per-container monitors with N
# detached pods running.
#
# Usage: sudo bench/pod.sh [RUNS] [PODS]
#   RUNS  hyperfine runs per handler (default 20)
#   PODS  detached pods for the memory figure (default 10)
# Needs: a release build (cargo build --release -p berth; for the monitor's
# memory as installed, also: cargo rustc --release -p berth --bin
# berth-monitor -- -C target-feature=+crt-static -C relocation-model=static), the test registry
# with the test images (scripts/test.sh or tests/fixtures/*.sh), hyperfine, root.
set -euo pipefail
cd "$(dirname "$0")/.."
REG=${BERTH_TEST_REGISTRY:-127.0.0.1:5123}
IMG=$REG/busybox:latest
RUNS=${1:-20}
PODS=${2:-10}
BERTH=$(realpath "${BERTH:-target/release/berth}")
[ -x "$BERTH" ] || { echo "build first: cargo build --release -p berth" >&2; exit 1; }

work=$(mktemp -d /tmp/bp.XXXXXX)
cfg=$work/config.toml
cleanup() {
  ip link del bbench0 2>/dev/null || true
  for id in $("$BERTH" --config "$cfg" ps -q 2>/dev/null); do "$BERTH" --config "$cfg" rm --force "$id" >/dev/null || true; done
  for d in /sys/fs/cgroup/*/berth-bench; do rmdir "$d" 2>/dev/null || true; done
  # The store sits on tmpfs: unmount it last.
  umount "$work/root" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/root"
mount -t tmpfs -o size=2g tmpfs "$work/root"
printf 'root = "%s/root"\nstate = "%s/s"\ncgroup_parent = "/berth-bench"\n[registry]\ncerts_dir = "%s/certs.d"\n[cni]\nconf_dir = "%s/cni.d"\n' \
  "$work" "$work" "$work" "$work" >"$cfg"
# A network of the benchmark's own: bridge, host-local, portmap, as setup.sh's.
mkdir -p "$work/cni.d"
cat >"$work/cni.d/10-bench.conflist" <<EOF
{ "cniVersion": "1.0.0", "name": "bench", "plugins": [
  { "type": "bridge", "bridge": "bbench0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": { "type": "host-local", "dataDir": "$work/ipam", "ranges": [[{ "subnet": "10.251.0.0/24" }]] } },
  { "type": "portmap", "capabilities": { "portMappings": true } } ] }
EOF
"$BERTH" --config "$cfg" image pull -q "$IMG" >/dev/null

for case in "berth none" "runc none" "berth bench" "runc bench"; do
  set -- $case
  echo "== berth run --rm --runtime $1 --net $2 $IMG -- /bin/true"
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/$1-$2.json" \
    "$BERTH --config $cfg run --rm -q --runtime $1 --net $2 $IMG -- /bin/true" >/dev/null
  jq -r '.results[0] | "median \(.median*1000|floor) ms  mean \(.mean*1000|floor) ms  min \(.min*1000|floor) ms  max \(.max*1000|floor) ms"' "$work/$1-$2.json"
done

# Pod start to running: `run -d` returns once the app is started. Timed one
# by one (the removal after each is not timed).
median_ms() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "median %.1f ms  min %.1f ms  max %.1f ms\n", m/1e6, a[1]/1e6, a[NR]/1e6}'; }
for net in none bench; do
  echo "== pod start to running: berth run -d --net $net $IMG -- sleep 600"
  for i in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    id=$("$BERTH" --config "$cfg" run -d -q --net "$net" "$IMG" -- sleep 600)
    t1=$(date +%s%N)
    echo $((t1 - t0))
    "$BERTH" --config "$cfg" rm --force "$id" >/dev/null
  done | median_ms
done

echo "== monitors with $PODS detached pods (embedded handler)"
for i in $(seq 1 "$PODS"); do
  "$BERTH" --config "$cfg" run -d -q --name "idle-$i" "$IMG" -- sleep 3600 >/dev/null
done
rss=0; pss=0; n=0
for p in /proc/[0-9]*; do
  if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qE "^$BERTH(-monitor| monitor) $work/"; then
    r=$(awk '/^VmRSS/ {print $2}' "$p/status")
    s=$(awk '/^Pss:/ {print $2}' "$p/smaps_rollup")
    rss=$((rss + r)); pss=$((pss + s)); n=$((n + 1))
  fi
done
echo "monitors: $n, RSS per monitor $((rss / n)) KiB, PSS per monitor $((pss / n)) KiB"
