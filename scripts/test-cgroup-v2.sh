#!/bin/bash
# test-cgroup-v2.sh - berth's cgroup tests on a pure cgroup v2 system:  sudo scripts/test-cgroup-v2.sh
#
# Hosts in the field are pure cgroup v2; a build machine may not be (this one is v1
# hybrid).  So the tests that depend on the cgroup version run in a throwaway QEMU guest
# (TCG) booted with cgroup_no_v1=all (crates/berth-vm, berth-vmtest): its root is this
# host's root, read-only through virtio-fs under a tmpfs overlay, so the test binaries,
# runc, the registry and /var/lib/berth-test are at the same paths, and nothing the
# guest writes reaches the host.
#
# 1. builds the selected test binaries (cargo test --no-run) and berth-vmtest;
# 2. boots the guest (2 vCPUs, 3 GiB, a 256 MiB scratch disk for the device checks),
#    which runs this script with --in-guest: it checks the hierarchy is pure v2, starts
#    the test registry (its storage is the host's, made writable by the overlay), runs
#    each test binary with its filter, prints a summary;
# 3. exits with the guest's status: non-zero when any test failed, the guest failed to
#    boot (125) or timed out (124; BERTH_V2_TIMEOUT seconds, default 1800).
#
# Which tests run is the SUITE list below: "package test-target [filter...]", a
# filter being libtest's (substring of the test name; several are or'ed).  A target
# whose file does not exist (yet) is skipped with a note.
# Extra arguments are passed to every test binary, e.g. -- --nocapture.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=(
  "berth-runtime cgroup"
  "berth-runtime device_filter"
  "berth-runtime monitor"
  "berth oci"
  "berth pod memory_limit_means_no_swap memory_limit_oom pids_limit stats_report run_prints_output detached_pod stop_kills exec_returns shared_pid_namespace secure_defaults"
  "berth confinement"
  "berth cri cri_pod_and_container_lifecycle stop_right_after_start zero_hugepage_limits"
)
THREADS=${BERTH_V2_TEST_THREADS:-2}

say() { echo "test-cgroup-v2.sh: $*" >&2; }

# --- inside the guest ----------------------------------------------------------------
if [ "${1:-}" = --in-guest ]; then
  shift
  list=$1
  shift
  echo "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
  if [ ! -f /sys/fs/cgroup/cgroup.controllers ] || grep -q ' cgroup ' /proc/mounts; then
    say "not a pure cgroup v2 guest"
    exit 1
  fi
  # Pin the binaries: the host may rebuild target/debug while the guest runs (a
  # shared tree), and a replaced file reached through the overlay answers ESTALE.
  # The host hard-linked this run's binaries into $snap; they go over their paths.
  snap=$(dirname "$list")/bin
  for f in "$snap"/*; do
    n=$(basename "$f")
    [ -e "target/debug/$n" ] && mount --bind "$f" "target/debug/$n"
  done
  # No udev here to load drivers on first use: the device tests need loop devices.
  modprobe loop
  export BERTH_TEST_REGISTRY=${BERTH_TEST_REGISTRY:-127.0.0.1:5123}
  export BERTH_TEST_IMAGES=${BERTH_TEST_IMAGES:-/var/lib/berth-test/images}
  # The registry's storage is the host's /var/lib/berth-test/registry as the overlay
  # shows it: pushes from tests land in guest memory only.
  tests/fixtures/registry.sh start >/dev/null
  # The confinement suite writes its table (berth vs runc, default vs privileged) here.
  export BERTH_CONFINEMENT_TABLE=/tmp/v2-confinement-table.md
  failed=0
  summary=()
  while IFS=$'\t' read -r dir bin filters; do
    name=$(basename "$bin")
    # shellcheck disable=SC2086 # filters are words
    say "run ${name%-*} $filters"
    start=$(date +%s)
    rc=0
    # cargo runs a test binary from its package's directory
    (cd "$dir" && CARGO_MANIFEST_DIR=$dir "$bin" --test-threads "$THREADS" $filters "$@") 2>&1 |
      tee "/tmp/v2-$name.log" || rc=$?
    result=$(grep -a '^test result:' "/tmp/v2-$name.log" | tail -n1) || true
    summary+=("$(printf '%-14s %4ss  rc=%-3s %s' "${name%-*}" "$(($(date +%s) - start))" "$rc" "${result:-no result}")")
    if [ "$rc" != 0 ]; then
      failed=1
      while read -r t; do summary+=("    FAILED $t"); done < <(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "/tmp/v2-$name.log")
    fi
  done <"$list"
  tests/fixtures/registry.sh stop >/dev/null || true
  echo
  if [ -f "$BERTH_CONFINEMENT_TABLE" ]; then
    echo "==== confinement on cgroup v2 ===="
    cat "$BERTH_CONFINEMENT_TABLE"
  fi
  echo "==== cgroup v2 suite (guest $(uname -r), $(nproc) vCPUs) ===="
  printf '%s\n' "${summary[@]}"
  exit "$failed"
fi

# --- on the host ----------------------------------------------------------------------
for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
  if [ -x "$d/cargo" ]; then PATH=$d:$PATH; break; fi
done
[ "$(id -u)" = 0 ] || { say "run as root (sudo $0)"; exit 1; }
extra=()
if [ "${1:-}" = -- ]; then shift; extra=("$@"); fi

# What the guest reads, at the same path there (not under /tmp, which the guest covers
# with a tmpfs of its own): the list of test binaries, and hard links of them and of
# berth's binaries, so a rebuild on the host meanwhile (new files) does not reach a run.
run=$PWD/target/berth-v2
rm -rf "$run"
mkdir -p "$run/bin" "$run/tests"
list=$run/suite.list
: >"$list"
trap 'rm -rf "$run"' EXIT

begin=$(date +%s)
say "building berth-vmtest and the test binaries"
cargo build -q -p berth-vm --bin berth-vmtest
for entry in "${SUITE[@]}"; do
  read -r pkg target filters <<<"$entry"
  dir=crates/$pkg
  if [ ! -f "$dir/tests/$target.rs" ]; then
    say "skipping $pkg/tests/$target.rs: not there"
    continue
  fi
  bin=$(cargo test -q -p "$pkg" --test "$target" --no-run --message-format=json |
    jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.name == "'"$target"'") | .executable' |
    tail -n1)
  [ -x "$bin" ] || { say "no test executable for $pkg --test $target"; exit 1; }
  ln -f "$bin" "$run/tests/"
  printf '%s\t%s\t%s\n' "$PWD/$dir" "$run/tests/$(basename "$bin")" "$filters" >>"$list"
done
# the binaries the tests run (env!("CARGO_BIN_EXE_…") names them under target/debug)
for f in target/debug/*; do
  if [ -f "$f" ] && [ -x "$f" ]; then ln -f "$f" "$run/bin/"; fi
done
# berth-runtime's monitor test runs its example from <profile dir>/examples, which
# for the linked test binaries is $run/examples: built here, not by cargo in the guest.
cargo build -q -p berth-runtime --example monitor
mkdir -p "$run/examples"
ln -f target/debug/examples/monitor "$run/examples/"
built=$(date +%s)
say "built in $((built - begin)) s; booting the cgroup v2 guest"

rc=0
target/debug/berth-vmtest --cpus 2 --memory 3072 --disk 256 --timeout "${BERTH_V2_TIMEOUT:-1800}" \
  --env "BERTH_V2_TEST_THREADS=$THREADS" \
  -- scripts/test-cgroup-v2.sh --in-guest "$list" "${extra[@]}" || rc=$?
say "guest suite exited with $rc after $(($(date +%s) - built)) s (build $((built - begin)) s)"
exit "$rc"
