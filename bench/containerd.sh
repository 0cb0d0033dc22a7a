#!/usr/bin/env bash
# containerd.sh - Debian's containerd (CRI plugin, runc) as the comparison for
# berth's CRI server, in dirs of its own so it never meets a system containerd.
#
#   root    ${BENCH_CONTAINERD_ROOT:-/var/lib/berth-bench-containerd}
#   state   ${BENCH_CONTAINERD_STATE:-/run/berth-bench-containerd}, the socket
#           containerd.sock in it
#   config  ${BENCH_CONTAINERD_CONF:-/etc/berth-bench-containerd}: config.toml,
#           cni.d/ (a copy of berth's default network, see below), certs.d/
#   pid     $STATE.pid, log $STATE.log
#
# The same pod network as berth's: cni.d holds a copy of berth's conflist
# (${BERTH_CNI_CONF:-/etc/cni/net.d/10-berth.conflist}) under the same network
# name, so both daemons attach pods to the one bridge and host-local hands out
# addresses from the one store (/var/lib/cni/networks/<name>) without clashes.
# The same registry: certs.d/<registry>/hosts.toml sends pulls of the test
# registry's images to it over plain HTTP; the sandbox (pause) image comes from
# there too (bench/pause-image.sh pushes it). restrict_oom_score_adj = true:
# this machine withholds CAP_SYS_RESOURCE, so the sandbox's default
# oom_score_adj of -998 cannot be set and every RunPodSandbox would fail.
# cgroupfs driver (no systemd here), overlayfs snapshotter, runc.
#
# Usage: sudo bench/containerd.sh start|stop|status|purge|run -- COMMAND...
#   start   installs containerd from Debian if missing, writes the config,
#           starts it (idempotent), returns once the CRI answers
#   stop    removes the pods berth-bench made through CRI (if the
#           berth-bench binary is at $BERTH_BENCH), stops the daemon by its
#           recorded PID, unmounts what it left below root and state
#   purge   stop, then delete root, state and config
#   run     start, run COMMAND with CONTAINERD_ENDPOINT set, stop
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${BENCH_CONTAINERD_ROOT:-/var/lib/berth-bench-containerd}
STATE=${BENCH_CONTAINERD_STATE:-/run/berth-bench-containerd}
CONF=${BENCH_CONTAINERD_CONF:-/etc/berth-bench-containerd}
REG=${BERTH_TEST_REGISTRY:-127.0.0.1:5123}
CNI_SRC=${BERTH_CNI_CONF:-/etc/cni/net.d/10-berth.conflist}
BERTH_BENCH=${BERTH_BENCH:-target/release/berth-bench}
SOCK=$STATE/containerd.sock
PIDF=$STATE.pid
LOG=$STATE.log
export CONTAINERD_ENDPOINT=unix://$SOCK

say() { echo "containerd.sh: $*" >&2; }

# The recorded PID, if that process still is the containerd we started.
our_pid() {
  local pid
  [ -f "$PIDF" ] || return 1
  pid=$(cat "$PIDF")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = containerd ] || return 1
  echo "$pid"
}

install_containerd() {
  command -v containerd >/dev/null && command -v containerd-shim-runc-v2 >/dev/null && command -v runc >/dev/null && return 0
  say "installing containerd and runc from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends containerd runc
}

write_config() {
  [ -f "$CNI_SRC" ] || { say "no CNI network at $CNI_SRC (berth's default network)"; return 1; }
  mkdir -p "$CONF/cni.d" "$CONF/certs.d/$REG" "$ROOT" "$STATE"
  rm -f "$CONF"/cni.d/*
  cp "$CNI_SRC" "$CONF/cni.d/"
  cat >"$CONF/certs.d/$REG/hosts.toml" <<EOF
# the test registry (tests/fixtures/registry.sh): plain HTTP on loopback
server = "http://$REG"

[host."http://$REG"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$CONF/config.toml" <<EOF
# written by bench/containerd.sh on every start
version = 2
root = "$ROOT"
state = "$STATE"
oom_score = 0

[grpc]
  address = "$SOCK"

[debug]
  level = "warn"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$REG/pause:3.9"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    # no CAP_SYS_RESOURCE here: clamp oom_score_adj to containerd's own
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "$(command -v runc)"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$CONF/cni.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CONF/certs.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "$ROOT/opt"
EOF
}

start() {
  local pid
  if pid=$(our_pid); then say "already running, pid $pid, $CONTAINERD_ENDPOINT"; return 0; fi
  install_containerd
  write_config
  rm -f "$PIDF"
  # A session of its own: it outlives the calling shell's terminal signals.
  # shellcheck disable=SC2016 # $$ and $1.. expand in the inner shell
  setsid bash -c 'echo $$ >"$1"; exec containerd --config "$2"' containerd-start "$PIDF" "$CONF/config.toml" \
    >>"$LOG" 2>&1 </dev/null &
  for _ in $(seq 300); do
    if [ -S "$SOCK" ] && ctr -a "$SOCK" version >/dev/null 2>&1; then
      pid=$(our_pid) || { say "containerd answers but $PIDF does not name it"; return 1; }
      say "containerd $(containerd --version | awk '{print $3}') up, pid $pid, $CONTAINERD_ENDPOINT"
      return 0
    fi
    if [ -s "$PIDF" ] && ! kill -0 "$(cat "$PIDF")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  say "containerd did not come up; last lines of $LOG:"
  tail -n 20 "$LOG" >&2 || true
  stop
  return 1
}

# Mounts below root and state, deepest first (a killed containerd or shim
# leaves snapshot mounts, and pods' /dev/shm).
unmount_below() {
  local dir
  for dir in "$ROOT" "$STATE"; do
    awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" || true; done
  done
}

stop() {
  local pid
  if [ -S "$SOCK" ] && [ -x "$BERTH_BENCH" ]; then
    "$BERTH_BENCH" --endpoint "containerd=$CONTAINERD_ENDPOINT" down >&2 || say "removing the benchmark's pods failed"
  fi
  if pid=$(our_pid); then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    say "stopped pid $pid"
  else
    say "not running (no containerd started by this script)"
  fi
  rm -f "$PIDF"
  unmount_below
}

purge() {
  stop
  rm -rf "$STATE" "$ROOT" "$CONF" "$LOG"
  say "removed $STATE $ROOT $CONF"
}

status() {
  local pid
  if pid=$(our_pid); then say "running, pid $pid, $CONTAINERD_ENDPOINT"; return 0; fi
  say "not running"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  purge) purge ;;
  status) status ;;
  run)
    shift
    [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || { echo "usage: $0 run -- COMMAND..." >&2; exit 2; }
    trap stop EXIT
    trap 'exit 130' INT TERM
    start
    "$@"
    ;;
  *) echo "usage: $0 start|stop|status|purge|run -- COMMAND..." >&2; exit 2 ;;
esac
