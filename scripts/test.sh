#!/bin/bash
# test.sh - berth's test command:  sudo scripts/test.sh [--ci] [-- runner args...]
#
# 1. (--ci only) cargo fmt --check and cargo clippy -D warnings, failing fast;
# 2. starts the test registry (tests/fixtures/registry.sh) unless one already answers
#    on $BERTH_TEST_REGISTRY, and stops it again on exit only if it started it;
# 3. builds/pushes the test images (tests/fixtures/make-images.sh; a no-op apart from
#    a check when they exist);
# 4. runs `cargo nextest run --workspace --no-fail-fast` (or `cargo test --workspace`
#    without cargo-nextest) with BERTH_TEST_REGISTRY and BERTH_TEST_IMAGES exported,
#    and exits with its status.  Arguments after `--` go to the runner, e.g.
#    scripts/test.sh -- -p berth-image  or  scripts/test.sh -- -E 'test(pull)'.
# 5. without runner arguments, runs scripts/test-cgroup-v2.sh (the cgroup tests in a
#    cgroup v2 QEMU guest) too, unless BERTH_SKIP_V2=1; fails when either fails.
set -euo pipefail
cd "$(dirname "$0")/.."

ci=0
runner_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --ci) ci=1 ;;
    --) shift; runner_args=("$@"); break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument $1 (usage: $0 [--ci] [-- runner args])" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "test.sh: $*" >&2; }

# sudo resets PATH; find the toolchain of root or of the invoking user.
for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
  if [ -x "$d/cargo" ]; then PATH=$d:$PATH; break; fi
done
command -v cargo >/dev/null || { say "cargo not found; run scripts/install-deps.sh"; exit 1; }
[ "$(id -u)" = 0 ] || { say "the tests start containers, mount filesystems and write /var/lib/berth-test: run as root (sudo $0)"; exit 1; }

export BERTH_TEST_REGISTRY=${BERTH_TEST_REGISTRY:-127.0.0.1:5123}
export BERTH_TEST_IMAGES=${BERTH_TEST_IMAGES:-/var/lib/berth-test/images}

if [ "$ci" = 1 ]; then
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
fi

started_registry=0
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
  if [ "$started_registry" = 1 ]; then
    tests/fixtures/registry.sh stop || say "could not stop the test registry"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! tests/fixtures/registry.sh status >/dev/null; then
  started_registry=1 # set first: a start that fails half-way is still cleaned up
  tests/fixtures/registry.sh start
fi
tests/fixtures/make-images.sh

if cargo nextest --version >/dev/null 2>&1; then
  # an empty test set (early in a crate's life) is not a failure
  export NEXTEST_NO_TESTS=${NEXTEST_NO_TESTS:-warn}
  runner=(cargo nextest run --workspace --no-fail-fast)
else
  say "cargo-nextest not installed; using cargo test"
  runner=(cargo test --workspace --no-fail-fast)
fi
say "${runner[*]} ${runner_args[*]}"
# The confinement suite (crates/berth/tests/confinement.rs) writes its table here.
export BERTH_CONFINEMENT_TABLE=${BERTH_CONFINEMENT_TABLE:-/var/lib/berth-test/confinement-table.md}
rm -f "$BERTH_CONFINEMENT_TABLE"
rc=0
"${runner[@]}" "${runner_args[@]}" || rc=$?
say "test runner exited with $rc"
if [ -f "$BERTH_CONFINEMENT_TABLE" ]; then
  say "confinement on this host (cgroup $([ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1)):"
  cat "$BERTH_CONFINEMENT_TABLE" >&2
fi

# 5. the cgroup tests again on a pure cgroup v2 system, in a QEMU guest
#    (scripts/test-cgroup-v2.sh); BERTH_SKIP_V2=1 skips it, and so do runner arguments
#    (a selection of the host suite).
if [ "${BERTH_SKIP_V2:-0}" != 1 ] && [ ${#runner_args[@]} = 0 ]; then
  v2=0
  scripts/test-cgroup-v2.sh || v2=$?
  say "cgroup v2 suite exited with $v2"
  [ "$rc" != 0 ] || rc=$v2
fi
exit "$rc"
