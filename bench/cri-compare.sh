#!/usr/bin/env bash
# cri-compare.sh - berth's CRI server against Debian's containerd (CRI plugin +
# runc), with the same CRI calls from one client (berth-bench), alternating
# run by run, on the same CNI network and the same local registry.
#
#   1. the test registry (tests/fixtures/registry.sh; started and stopped here
#      if it was not running) with busybox, big and pause:3.9
#      (bench/pause-image.sh);
#   2. a tmpfs at /var/lib/berth-bench holding both daemons' roots (this
#      machine's root filesystem slows file creation after large deletes);
#   3. `berth daemon` (root /var/lib/berth-bench/berth, state and socket
#      /run/berth-bench, cgroups under /berth-cri-bench, berth's default CNI
#      network) and containerd (bench/containerd.sh, root
#      /var/lib/berth-bench/containerd);
#   4. memory: each daemon's VmRSS idle and with $MEM_PODS pods (a busybox
#      sleep each; right after they started, +2 s and +5 s), and the
#      processes each keeps per pod (berth: its monitors; containerd: shim +
#      pause), VmRSS and PSS;
#   5. berth-bench pod, container, scratch, pull, density, alternating;
#   6. the daemons' VmRSS idle again; everything removed (pods via CRI, then
#      the daemons by PID, mounts, cgroups, the registry if started here).
#
# Usage: sudo bench/cri-compare.sh [RUNS] [DENSITY_PODS]
#   RUNS           samples per endpoint and scenario (default 10)
#   DENSITY_PODS   pods of the density scenario (default 50)
#   env DENSITY_RUNS (default 3), MEM_PODS (default 20), OUT (results dir,
#   default /tmp/berth-cri-compare: JSON per scenario and the text log)
# Needs: cargo build --release -p berth -p berth-bench, and the static
# monitor (cargo rustc --release -p berth --bin berth-monitor -- -C
# target-feature=+crt-static -C relocation-model=static), the test images (tests/fixtures/make-images.sh),
# root.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
DENSITY_PODS=${2:-50}
DENSITY_RUNS=${DENSITY_RUNS:-3}
MEM_PODS=${MEM_PODS:-20}
OUT=${OUT:-/tmp/berth-cri-compare}
REG=${BERTH_TEST_REGISTRY:-127.0.0.1:5123}
for b in berth berth-monitor berth-oci berth-bench; do
  [ -x "target/release/$b" ] || { echo "cri-compare.sh: target/release/$b missing: cargo build --release -p berth -p berth-bench" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "cri-compare.sh: run as root" >&2; exit 1; }

TMPFS=/var/lib/berth-bench
# The binaries are copied onto the tmpfs, so a rebuild during the run cannot
# swap them; berth finds its monitor next to itself.
BIN=$TMPFS/bin
BERTH=$BIN/berth
MONITOR=$BIN/berth-monitor
BENCH=$BIN/berth-bench
BSTATE=/run/berth-bench
BSOCK=$BSTATE/berth.sock
BCFG=$TMPFS/berth.toml
CGPARENT=berth-cri-bench
export BENCH_CONTAINERD_ROOT=$TMPFS/containerd
export BENCH_CONTAINERD_STATE=/run/berth-bench-containerd
export BERTH_BENCH=$BENCH
CSOCK=$BENCH_CONTAINERD_STATE/containerd.sock
EP_B=berth=unix://$BSOCK
EP_C=containerd=unix://$CSOCK

say() { echo "cri-compare.sh: $*" >&2; }

registry_started=0
berth_pid=
bridge_existed=0
[ -e /sys/class/net/berth0 ] && bridge_existed=1
k8s_cgroup_existed=0
[ -d /sys/fs/cgroup/memory/k8s.io ] && k8s_cgroup_existed=1

cleanup() {
  set +e
  # Pods first, through CRI, while both daemons still answer.
  [ -S "$BSOCK" ] && "$BENCH" --endpoint "$EP_B" down >&2
  bench/containerd.sh purge
  if [ -n "$berth_pid" ]; then
    kill "$berth_pid" 2>/dev/null
    wait "$berth_pid" 2>/dev/null
    say "stopped berth daemon pid $berth_pid"
  fi
  for dir in "$BSTATE" "$TMPFS"; do
    awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m"; done
  done
  umount "$TMPFS" 2>/dev/null && rmdir "$TMPFS"
  rm -rf "$BSTATE"
  # berth removes its pods' cgroups; the parent is this script's.
  for d in /sys/fs/cgroup/*/"$CGPARENT"; do [ -d "$d" ] && rmdir "$d"; done
  # containerd (no cgroup_parent given) puts pods under /k8s.io and leaves it.
  if [ "$k8s_cgroup_existed" = 0 ]; then
    for d in /sys/fs/cgroup/*/k8s.io; do [ -d "$d" ] && rmdir "$d"; done
  fi
  # The bridge, if this run made it and nothing is attached to it any more.
  if [ "$bridge_existed" = 0 ] && [ -d /sys/class/net/berth0/brif ] &&
    [ -z "$(ls /sys/class/net/berth0/brif)" ]; then
    ip link del berth0
  fi
  [ "$registry_started" = 1 ] && tests/fixtures/registry.sh stop >&2
  return 0
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap cleans up.
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ setup --

if ! tests/fixtures/registry.sh status >/dev/null 2>&1; then
  tests/fixtures/registry.sh start >&2
  registry_started=1
fi
for ref in busybox:latest big:latest; do
  curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REG/v2/${ref%%:*}/manifests/${ref#*:}" ||
    { say "$REG has no $ref: run tests/fixtures/make-images.sh"; exit 1; }
done
bench/pause-image.sh >&2

mkdir -p "$TMPFS" "$OUT"
mountpoint -q "$TMPFS" && { say "$TMPFS is already a mount point: another run?"; exit 1; }
mount -t tmpfs -o size=4g,mode=0755 tmpfs "$TMPFS"
mkdir -p "$TMPFS/certs.d/$REG" "$BSTATE" "$BIN"
cp target/release/berth target/release/berth-monitor target/release/berth-oci target/release/berth-bench "$BIN/"
printf 'server = "http://%s"\n' "$REG" >"$TMPFS/certs.d/$REG/hosts.toml"
cat >"$BCFG" <<EOF
root = "$TMPFS/berth"
state = "$BSTATE"
cgroup_parent = "/$CGPARENT"
[registry]
certs_dir = "$TMPFS/certs.d"
EOF

"$BERTH" --config "$BCFG" --log-level warn daemon --socket "unix://$BSOCK" >"$OUT/berth-daemon.log" 2>&1 &
berth_pid=$!
for _ in $(seq 300); do [ -S "$BSOCK" ] && break; sleep 0.1; done
[ -S "$BSOCK" ] || { say "berth daemon did not listen; see $OUT/berth-daemon.log"; exit 1; }
bench/containerd.sh start
ctrd_pid=$(cat "$BENCH_CONTAINERD_STATE.pid")

# ----------------------------------------------------------------- memory --

kib() { awk -v k="$2:" '$1 == k { print $2; exit }' "/proc/$1/${3:-status}" 2>/dev/null || echo 0; }
rss() { kib "$1" VmRSS; }
pss() { kib "$1" Pss smaps_rollup; }
argv() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null; }

# PIDs of the processes a daemon keeps per pod, one "PID NAME" a line.
# berth: its monitors (argv[0] is berth's monitor binary, the container's
# directory under berth's state) and any other berth process under its
# state; containerd: the shims serving its socket, and their pause children
# (found by parent PID: this kernel has no /proc/PID/task/TID/children).
per_pod_procs() {
  local p pid a shims=" "
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    { [ "$pid" = "$berth_pid" ] || [ "$pid" = "$ctrd_pid" ]; } && continue
    a=$(argv "$pid")
    case $1 in
      berth)
        case $a in "$MONITOR "*"$BSTATE/"* | "$BERTH "*"$BSTATE/"*) echo "$pid $(cat "$p/comm")" ;; esac ;;
      containerd)
        case $a in
          *containerd-shim-runc-v2*" -address $CSOCK"*) echo "$pid containerd-shim-runc-v2"; shims+="$pid " ;;
        esac ;;
    esac
  done
  [ "$1" = containerd ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = pause ] || continue
    case $shims in *" $(kib "${p#/proc/}" PPid) "*) echo "${p#/proc/} pause" ;; esac
  done
}

# "name: N processes, RSS total, per pod; PSS total, per pod" for a daemon.
report_per_pod() {
  local who=$1 pods=$2 list
  list=$(per_pod_procs "$who")
  [ -n "$list" ] || { echo "  $who: no per-pod processes found"; return; }
  while read -r name; do
    local n=0 r=0 s=0
    while read -r pid nm; do
      [ "$nm" = "$name" ] || continue
      n=$((n + 1)) r=$((r + $(rss "$pid"))) s=$((s + $(pss "$pid")))
    done <<<"$list"
    echo "  $who per pod: $name x$n, VmRSS $r KiB total, $((r / pods)) KiB per pod; PSS $s KiB total, $((s / pods)) KiB per pod"
  done < <(awk '{print $2}' <<<"$list" | sort -u)
  local r=0 s=0
  while read -r pid _; do r=$((r + $(rss "$pid"))) s=$((s + $(pss "$pid"))); done <<<"$list"
  echo "  $who per pod, all processes: VmRSS $((r / pods)) KiB, PSS $((s / pods)) KiB"
}

daemon_mem() { echo "VmRSS $(rss "$1") KiB, PSS $(pss "$1") KiB"; }

memory() {
  local who pid ep at0 at2
  echo "== memory ($(date -u '+%F %H:%M UTC')): daemons idle, then with $MEM_PODS pods (busybox sleep each)"
  "$BENCH" --endpoint "$EP_B" --endpoint "$EP_C" up --pods 1 >/dev/null
  "$BENCH" --endpoint "$EP_B" --endpoint "$EP_C" down >/dev/null
  sleep 2
  echo "  idle (after one pod came and went): berth daemon $(daemon_mem "$berth_pid");" \
    "containerd $(daemon_mem "$ctrd_pid")"
  # One daemon at a time, so that +0 s is right after that daemon's own pods
  # started. berth gives back the code pages a burst faulted in within a
  # fraction of a second of noticing the growth, so its figure right after
  # the burst and the one a few seconds later differ; both are reported.
  for who in berth containerd; do
    case $who in
      berth) pid=$berth_pid ep=$EP_B ;;
      containerd) pid=$ctrd_pid ep=$EP_C ;;
    esac
    "$BENCH" --endpoint "$ep" up --pods "$MEM_PODS" >/dev/null
    at0=$(daemon_mem "$pid")
    sleep 2
    at2=$(daemon_mem "$pid")
    sleep 3
    echo "  $who daemon with $MEM_PODS pods: +0 s $at0; +2 s $at2; +5 s $(daemon_mem "$pid")"
  done
  report_per_pod berth "$MEM_PODS"
  report_per_pod containerd "$MEM_PODS"
  "$BENCH" --endpoint "$EP_B" --endpoint "$EP_C" down >/dev/null
}

# ------------------------------------------------------------- benchmarks --

bench() { # SCENARIO [ARGS...]
  local s=$1
  shift
  "$BENCH" --endpoint "$EP_B" --endpoint "$EP_C" --json "$OUT/$s.json" "$s" "$@"
}

{
  echo "cri-compare.sh $RUNS $DENSITY_PODS on $(uname -n), $(date -u '+%F %H:%M UTC'); $(containerd --version); roots on tmpfs"
  memory
  bench pod --runs "$RUNS"
  bench container --runs "$RUNS"
  bench scratch --runs "$RUNS"
  bench pull --runs "$RUNS" --after-remove "berth=$BERTH --config $BCFG gc"
  # Proof that each pull was a full one: the big image's content is gone again.
  echo "   roots after the pull runs: berth $(du -sm "$TMPFS/berth" | cut -f1) MB," \
    "containerd $(du -sm "$BENCH_CONTAINERD_ROOT" | cut -f1) MB (busybox, pause; big unpacks to 127 MB)"
  bench density --runs "$DENSITY_RUNS" --pods "$DENSITY_PODS"
  echo "== idle after the benchmarks: berth daemon VmRSS $(rss "$berth_pid") KiB; containerd VmRSS $(rss "$ctrd_pid") KiB"
} 2>&1 | tee "$OUT/cri-compare.txt"
