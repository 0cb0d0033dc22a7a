#!/usr/bin/env bash
# OCI runtime lifecycle benchmark: `/bin/true` in a busybox bundle through
#   run:  `RT run B ID` (create + start + wait + delete in one invocation)
#   seq:  `RT create; RT start; poll RT state until stopped; RT delete`
# for `berth oci`, runc and crun, medians side by side.
#
# Usage: sudo bench/oci-lifecycle.sh [RUNS]
#   RUNS    hyperfine runs per command (default 30)
#   BERTH   berth binary (default: target/release/berth, built if missing)
# Needs root, hyperfine, jq, /bin/busybox (busybox-static).
#
# crun 1.8 refuses a cgroup v1 "hybrid" host whose cgroup2 mount lists a
# controller ("cgroups in hybrid mode not supported"). The script re-runs
# itself in a private mount namespace without /sys/fs/cgroup/unified, so
# all three runtimes see the same plain cgroup v1 layout; the host's mounts
# are untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}

if [ -z "${BERTH_BENCH_IN_NS:-}" ] && grep -qs . /sys/fs/cgroup/unified/cgroup.controllers; then
  exec env BERTH_BENCH_IN_NS=1 unshare --mount --propagation private \
    sh -c 'umount /sys/fs/cgroup/unified && exec "$0" "$@"' "$0" "$@"
fi

if [ -z "${BERTH:-}" ]; then
  [ -x target/release/berth ] || cargo build --release -p berth
  BERTH=target/release/berth
fi
BERTH=$(realpath "$BERTH")

work=$(mktemp -d /tmp/oci-bench.XXXXXX)
B=$work/bundle
declare -A RT=(
  [berth]="$BERTH oci --root $work/state-berth"
  [berth-oci]="$(dirname "$BERTH")/berth-oci --root $work/state-berth-oci"
  [runc]="runc --root $work/state-runc"
  [crun]="crun --root $work/state-crun"
)
ORDER=(berth berth-oci runc crun)
for r in "${ORDER[@]}"; do
  command -v "${RT[$r]%% *}" >/dev/null || { echo "skip $r: not installed" >&2; unset "RT[$r]"; }
done
ORDER=($(for r in "${ORDER[@]}"; do [ -n "${RT[$r]:-}" ] && echo "$r"; done))

cleanup() {
  for r in "${ORDER[@]}"; do ${RT[$r]} delete --force "bench-$r" >/dev/null 2>&1 || true; done
  rm -rf "$work"
  # crun, not finding a cgroup2 mount at /sys/fs/cgroup/unified, makes
  # plain directories there (in the host's /sys/fs/cgroup tmpfs, under the
  # hidden mountpoint, with a cgroup.procs file); remove those too.
  mountpoint -q /sys/fs/cgroup/unified || rm -rf /sys/fs/cgroup/unified/berth-bench
  rmdir /sys/fs/cgroup/*/berth-bench 2>/dev/null || true
}
trap cleanup EXIT

# The bundle: static busybox, /bin/true, its own cgroup per runtime below
# (written per runtime so a leftover of one cannot disturb another).
mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/dev" "$B/rootfs/sys"
cp /bin/busybox "$B/rootfs/bin/busybox"
for a in sh true; do ln -s busybox "$B/rootfs/bin/$a"; done
bundle_for() { # $1 = runtime name
  local d=$work/bundle-$1
  mkdir -p "$d"
  cat >"$d/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
    "env": ["PATH=/bin"], "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "noNewPrivileges": true
  },
  "root": {"path": "$B/rootfs", "readonly": true},
  "hostname": "bench",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {
    "cgroupsPath": "/berth-bench/$1",
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
  }
}
JSON
  echo "$d"
}

# One lifecycle step by step; polling `state` is what a caller without a
# monitor does to learn the container stopped.
seq_script=$work/seq.sh
cat >"$seq_script" <<'SH'
#!/bin/sh
# usage: seq.sh BUNDLE ID RUNTIME-ARGV...
b=$1 id=$2; shift 2
"$@" create --bundle "$b" "$id" || exit 1
"$@" start "$id" || exit 1
while "$@" state "$id" | grep -q '"status": *"\(running\|created\)"'; do :; done
"$@" delete "$id"
SH
chmod +x "$seq_script"

for r in "${ORDER[@]}"; do echo "$r: $(${RT[$r]%% *} --version 2>/dev/null | head -1 || true)"; done
run_cmds=() seq_cmds=()
for r in "${ORDER[@]}"; do
  d=$(bundle_for "$r")
  run_cmds+=("${RT[$r]} run --bundle $d bench-$r")
  seq_cmds+=("$seq_script $d bench-$r ${RT[$r]}")
  # A failing runtime would otherwise show up as a fast one.
  ${RT[$r]} run --bundle "$d" "bench-$r" >/dev/null || { echo "$r: run failed" >&2; exit 1; }
done

hyperfine -N --warmup 3 --runs "$RUNS" --style basic --export-json "$work/run.json" "${run_cmds[@]}"
hyperfine -N --warmup 3 --runs "$RUNS" --style basic --export-json "$work/seq.json" "${seq_cmds[@]}"

echo
echo "== median ms (/bin/true lifecycle, $RUNS runs, cgroup v1, kernel $(uname -r))"
printf '%-10s %10s %10s\n' runtime run seq
for i in "${!ORDER[@]}"; do
  m() { jq -r ".results[$i].median * 1000 | . * 100 | round / 100" "$work/$1.json"; }
  printf '%-10s %10s %10s\n' "${ORDER[$i]}" "$(m run)" "$(m seq)"
done
left=$(find /sys/fs/cgroup/*/berth-bench -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true)
echo "cgroups left under berth-bench: ${left:-none}"
