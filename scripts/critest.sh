#!/bin/bash
# shellcheck disable=SC2317  # functions called through derive and the trap look unreachable
# critest.sh - run cri-tools' critest (validation suite) against `berth daemon`, offline.
#
# Usage: scripts/critest.sh CRITEST [critest args...]
#        CRITEST=/path/to/critest scripts/critest.sh [critest args...]
#   e.g. scripts/critest.sh /work/critest/bin/critest --ginkgo.focus='should support port mapping'
#
# What it does, all of it private to this script and undone on exit (trap):
#   1. images: the stand-ins for every image critest v1.29 pulls, built from Debian's
#      dynamic busybox (.deb, unpacked, not installed), gcc -static of
#      tests/fixtures/critest/{pause,nnp}.c, umoci and skopeo, and pushed under the
#      upstream repository paths to a docker-registry on 127.0.0.1:5001 (storage under
#      /var/lib/berth-critest-registry). Built only when the registry lacks one of them.
#      If something already answers on 5001 (a lab registry), it is used and left alone.
#   2. config: a berth config file of its own ($CONF/config.toml) naming a certs dir whose
#      hosts.toml files send registry.k8s.io, k8s.gcr.io, gcr.io, docker.io, public.ecr.aws
#      and quay.io to http://127.0.0.1:5001 only (as `server`, so nothing falls back to the
#      internet), and a CNI dir with one bridge network (berthcrit0, 10.92.0.0/16, portmap,
#      loopback) whose pods cannot forward beyond the bridge (iptables FORWARD DROP).
#   3. berth daemon with its own --root/--state/--socket (/var/lib/berth-critest,
#      /run/berth-critest, /run/berth-critest/berth.sock), cgroup parent /berth-critest.
#   4. critest --runtime-endpoint/--image-endpoint on that socket, --ginkgo.no-color,
#      --ginkgo.json-report=$OUT/report.json, then the arguments given.
#   5. on exit: removes every pod the daemon has, stops the daemon and the registry
#      (only the ones it started, by pid), deletes the bridge, the iptables rule, the
#      host-local leases, the cgroup parent, the daemon's root and state.
#
# Environment:
#   BERTH        the berth binary [target/release/berth, else /usr/local/bin/berth: the
#                first one that has `berth daemon`]
#   CRITEST_OUT  logs and report [/var/log/berth-critest]: critest.log, report.json,
#                daemon.log, registry.log (when this script started the registry)
#   KEEP_ROOT=1  keep /var/lib/berth-critest (pulled images) for the next run
#   FORCE_IMAGES=1  rebuild and push the stand-in images even if the registry has them
#   IMAGES_ONLY=1   stop after the images are in the registry (no berth, no critest)
#
# Exit status: critest's.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
FIXTURES=$REPO/tests/fixtures/critest

if [ -z "${CRITEST:-}" ]; then
  [ $# -ge 1 ] || { echo "usage: $0 CRITEST [critest args...]  (or CRITEST=... $0 [args...])" >&2; exit 2; }
  CRITEST=$1
  shift
fi
[ -x "$CRITEST" ] || { echo "critest.sh: $CRITEST is not an executable critest binary" >&2; exit 2; }
CRITEST=$(readlink -f "$CRITEST")

REG_ADDR=127.0.0.1:5001
REG_ROOT=/var/lib/berth-critest-registry
REG_DATA=$REG_ROOT/data
WORK=$REG_ROOT/work
ROOT=/var/lib/berth-critest
STATE=/run/berth-critest
SOCK=$STATE/berth.sock
CONF=/run/berth-critest-conf
OUT=${CRITEST_OUT:-/var/log/berth-critest}
NET_NAME=berth-critest
BRIDGE=berthcrit0
SUBNET=10.92.0.0/16
CGROUP_PARENT=/berth-critest
MIRRORED_HOSTS=(registry.k8s.io k8s.gcr.io gcr.io docker.io public.ecr.aws quay.io)

REG_PID=
DAEMON_PID=

log() { echo "critest.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

has_daemon() { [ -x "$1" ] && "$1" daemon --help >/dev/null 2>&1; }

pick_berth() {
  if [ -n "${BERTH:-}" ]; then
    has_daemon "$BERTH" || die "BERTH=$BERTH has no 'daemon' subcommand"
    return
  fi
  for b in "$REPO/target/release/berth" /usr/local/bin/berth; do
    if has_daemon "$b"; then BERTH=$b; return; fi
  done
  die "no berth binary with 'berth daemon' (build it: cargo build --release -p berth)"
}

need_tools() {
  local missing=()
  for t in docker-registry skopeo umoci gcc jq curl iptables; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (apt-get install docker-registry skopeo umoci gcc libc6-dev jq curl iptables)"
}

# ------------------------------------------------------------------ registry --

answers() { curl -fsS -o /dev/null --max-time 2 "http://$REG_ADDR/v2/" 2>/dev/null; }

start_registry() {
  if answers; then
    log "a registry already answers on $REG_ADDR: using it, not starting another"
    return
  fi
  mkdir -p "$REG_DATA" "$OUT"
  cat >"$REG_ROOT/config.yml" <<EOF
# written by scripts/critest.sh on every start
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REG_DATA
  delete:
    enabled: true
http:
  addr: $REG_ADDR
health:
  storagedriver:
    enabled: false
EOF
  setsid docker-registry serve "$REG_ROOT/config.yml" >"$OUT/registry.log" 2>&1 </dev/null &
  REG_PID=$!
  for _ in $(seq 100); do answers && break; sleep 0.1; done
  answers || die "registry did not come up on $REG_ADDR; see $OUT/registry.log"
  log "registry up on $REG_ADDR (pid $REG_PID, data $REG_DATA)"
}

# -------------------------------------------------------------------- images --
# Base rootfs: Debian's dynamic busybox plus the glibc it needs. Not busybox-static:
# that build runs applets in-process (FEATURE_SH_STANDALONE), so `sh -c ls` never
# execs /bin/ls and the MaskedPaths spec, which masks /bin/ls, cannot pass. Applets
# are hardlinks as in the real busybox image: a symlink would make the runtime mask
# /bin/busybox itself.

OCI=$WORK/oci
BB_DIR=$WORK/busybox-deb

U() { umoci --log error "$@"; }

fetch_busybox() {
  [ -x "$BB_DIR/bin/busybox" ] && return
  mkdir -p "$WORK/debs"
  (cd "$WORK/debs" && rm -f busybox_*.deb && apt-get download busybox >/dev/null) ||
    die "apt-get download busybox failed (apt-get update first?)"
  rm -rf "$BB_DIR"
  dpkg-deb -x "$WORK"/debs/busybox_*.deb "$BB_DIR"
}

write_base_rootfs() { # $1 = rootfs
  local r=$1 bb=$BB_DIR/bin/busybox lib
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,home,tmp,var/run,var/log,var/www,proc,sys,dev,lib/x86_64-linux-gnu,lib64}
  chmod 1777 "$r/tmp"
  chmod 0700 "$r/root"
  install -m 0755 "$bb" "$r/bin/busybox"
  for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -f "$r/bin/busybox" "$r/bin/$a"
  done
  for lib in $(ldd "$bb" | awk '/=>/ {print $3} /ld-linux/ && !/=>/ {print $1}'); do
    cp -L "$lib" "$r$lib"
  done
  # Applets the real image has and Debian's build lacks; specs call them.
  cat >"$r/bin/pgrep" <<'EOF'
#!/bin/sh
# pgrep stand-in: pids whose comm matches the ERE in $1
pat=$1; rc=1
for d in /proc/[0-9]*; do
  c=$(cat "$d/comm" 2>/dev/null) || continue
  if echo "$c" | grep -Eq -- "$pat"; then echo "${d#/proc/}"; rc=0; fi
done
exit $rc
EOF
  cat >"$r/bin/ipcs" <<'EOF'
#!/bin/sh
# ipcs stand-in: the shared memory table only, from /proc/sysvipc/shm
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR > 1 { printf "0x%08x %-10s %-10s %-10s %-10s %-10s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
echo
EOF
  chmod 0755 "$r/bin/pgrep" "$r/bin/ipcs"
  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
  cat >"$r/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
floppy:x:11:
news:x:13:
uucp:x:14:
www-data:x:33:
users:x:100:
nogroup:x:65534:
EOF
  printf 'root:*::0:::::\nnobody:*::0:::::\nwww-data:*::0:::::\n' >"$r/etc/shadow"
  chmod 0600 "$r/etc/shadow"
  echo "127.0.0.1 localhost" >"$r/etc/hosts"
  : >"$r/etc/resolv.conf"
}

# derive SRC DST FN [ARGS]: DST = SRC plus a layer that FN writes into the rootfs.
derive() {
  local src=$1 dst=$2 fn=$3 b=$WORK/bundle-$2
  shift 3
  rm -rf "$b"
  U unpack --image "$OCI:$src" "$b"
  "$fn" "$b/rootfs" "$@"
  U repack --image "$OCI:$dst" "$b"
  rm -rf "$b"
}

pop_base() { write_base_rootfs "$1"; }
pop_file() { echo "$2" >"$1/$2"; } # as cri-tools' images/image-test: ADD ${TEST} ${TEST}
pop_pause() { install -m 0755 "$WORK/bin/pause" "$1/pause"; }
pop_nnp() { install -o 0 -g 0 -m 4755 "$WORK/bin/nnp" "$1/usr/local/bin/nnp"; }
pop_predef_group() {
  echo "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh" >>"$1/etc/passwd"
  echo "default-user:x:1000:" >>"$1/etc/group"
  echo "group-defined-in-image:x:50000:default-user" >>"$1/etc/group"
  echo "default-user:!::0:99999:7:::" >>"$1/etc/shadow"
  mkdir -p "$1/home/default-user"
  chown 1000:1000 "$1/home/default-user"
}
# nginx stand-in: busybox httpd that looks like nginx to the specs: comm "nginx"
# (pidof/pgrep nginx), /var/run/nginx.pid, "master process" in /proc/1/cmdline,
# HTTP 200 on / at port $2 (80, or 12003 for hostnet-nginx).
pop_nginx() {
  local r=$1 port=$2
  ln -f "$r/bin/busybox" "$r/usr/sbin/nginx"
  mkdir -p "$r/usr/share/nginx/html" "$r/etc/nginx"
  echo '<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>' \
    >"$r/usr/share/nginx/html/index.html"
  cat >"$r/docker-entrypoint.sh" <<EOF
#!/bin/sh
# stand-in for nginx -g 'daemon off;' (busybox httpd; see scripts/critest.sh)
echo \$\$ > /var/run/nginx.pid
exec -a httpd /usr/sbin/nginx -f -v -p $port -h /usr/share/nginx/html -r "nginx: master process nginx -g daemon off;"
EOF
  chmod 0755 "$r/docker-entrypoint.sh"
}
# httpd stand-in: logs the line the multi-container spec looks for, serves /.
pop_httpd() {
  local r=$1
  mkdir -p "$r/usr/local/apache2/htdocs" "$r/usr/local/apache2/bin"
  echo '<html><body><h1>It works!</h1></body></html>' >"$r/usr/local/apache2/htdocs/index.html"
  cat >"$r/usr/local/bin/httpd-foreground" <<'EOF'
#!/bin/sh
# stand-in for httpd:2.4 (busybox httpd)
echo "[core:notice] [pid $$] AH00094: Command line: 'httpd -D FOREGROUND'"
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
EOF
  chmod 0755 "$r/usr/local/bin/httpd-foreground"
}

cfg() {
  local img=$1
  shift
  U config --image "$OCI:$img" --os linux --architecture amd64 --author berth-critest "$@"
}

# push_ref LAYOUT_TAG REPO:TAG [v2s2|oci]
push_ref() {
  local args=()
  [ "${3:-v2s2}" = v2s2 ] && args=(--format v2s2)
  skopeo copy -q --dest-tls-verify=false "${args[@]}" "oci:$OCI:$1" "docker://$REG_ADDR/$2"
}

# wrap_in_list REPO:TAG: make the tag a manifest list (or OCI index) with the one
# amd64 manifest it pointed at, as the multi-arch upstream images are.
wrap_in_list() {
  local repo=${1%:*} tag=${1##*:} mt mf dg sz lmt
  mt=$(curl -fsSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG_ADDR/v2/$repo/manifests/$tag" |
    awk -F': ' 'tolower($1)=="content-type" {print $2}' | tr -d '\r')
  mf=$(curl -fsS -H "Accept: $mt" "http://$REG_ADDR/v2/$repo/manifests/$tag")
  dg=sha256:$(printf '%s' "$mf" | sha256sum | cut -d' ' -f1)
  sz=$(printf '%s' "$mf" | wc -c)
  if [ "$mt" = application/vnd.oci.image.manifest.v1+json ]; then
    lmt=application/vnd.oci.image.index.v1+json
  else
    lmt=application/vnd.docker.distribution.manifest.list.v2+json
  fi
  jq -cn --arg lmt "$lmt" --arg mt "$mt" --arg dg "$dg" --argjson sz "$sz" \
    '{schemaVersion:2, mediaType:$lmt, manifests:[{mediaType:$mt, digest:$dg, size:$sz, platform:{architecture:"amd64", os:"linux"}}]}' |
    curl -fsS -X PUT -H "Content-Type: $lmt" --data-binary @- "http://$REG_ADDR/v2/$repo/manifests/$tag" >/dev/null
}

K=e2e-test-images
S=k8s-staging-cri-tools
# Every repository:tag pushed; a missing one means the images get (re)built.
ALL_REFS=(
  pause:3.9 pause:3.6 "$K"/busybox:1.29-2 "$K"/nginx:1.14-2 "$K"/httpd:2.4.39-4 "$K"/nonewprivs:1.3
  "$S"/hostnet-nginx-amd64:latest "$S"/test-image-1:latest "$S"/test-image-2:latest "$S"/test-image-3:latest
  "$S"/test-image-latest:latest "$S"/test-image-digest:latest "$S"/test-image-tags:1 "$S"/test-image-tags:2
  "$S"/test-image-tags:3 "$S"/test-image-tag:test "$S"/test-image-tag:all "$S"/test-image-user-uid:latest
  "$S"/test-image-user-username:latest "$S"/test-image-user-uid-group:latest
  "$S"/test-image-user-username-group:latest "$S"/test-image-predefined-group:latest
  docker/library/busybox:1.35.0-glibc docker/library/busybox:1-uclibc docker/library/busybox:1
  docker/library/busybox:1-glibc docker/library/busybox:1-musl docker/library/busybox:latest
  library/busybox:latest
)

images_present() {
  local ref accept='application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json'
  for ref in "${ALL_REFS[@]}"; do
    curl -fsS -o /dev/null -I -H "Accept: $accept" "http://$REG_ADDR/v2/${ref%:*}/manifests/${ref##*:}" 2>/dev/null ||
      return 1
  done
}

build_and_push_images() {
  if [ "${FORCE_IMAGES:-0}" != 1 ] && images_present; then
    log "stand-in images already in the registry"
    return
  fi
  log "building the stand-in images in $WORK"
  rm -rf "$OCI" "$WORK"/bundle-*
  mkdir -p "$WORK/bin"
  fetch_busybox
  gcc -static -Os -s -o "$WORK/bin/pause" "$FIXTURES/pause.c"
  gcc -static -Os -s -o "$WORK/bin/nnp" "$FIXTURES/nnp.c"
  U init --layout "$OCI"
  U new --image "$OCI:scratch"

  derive scratch pause pop_pause
  cfg pause --config.entrypoint /pause --config.user 65535:65535 --config.workingdir /
  derive scratch base pop_base
  cfg base --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.cmd sh
  derive base nginx pop_nginx 80
  cfg nginx --config.entrypoint /docker-entrypoint.sh --config.exposedports 80/tcp --config.stopsignal SIGQUIT
  derive base hostnet-nginx pop_nginx 12003
  cfg hostnet-nginx --config.entrypoint /docker-entrypoint.sh --config.exposedports 12003/tcp --config.stopsignal SIGQUIT
  derive base httpd pop_httpd
  cfg httpd --config.cmd httpd-foreground --config.exposedports 80/tcp --config.workingdir /usr/local/apache2 --config.stopsignal SIGWINCH
  derive base nonewprivs pop_nnp
  cfg nonewprivs --config.entrypoint /usr/local/bin/nnp
  local t u
  for t in test-image-1 test-image-2 test-image-3 test-image-latest test-image-digest same-image test all; do
    derive base "f-$t" pop_file "$t"
  done
  # USER-only variants of the base, like cri-tools' images/image-user
  for u in 1002 www-data 1003:1004 www-data:1004; do
    cfg base --tag "u-${u//:/-}" --config.user "$u"
  done
  derive base predef pop_predef_group
  cfg predef --config.user 1000
  for t in 1.35.0-glibc 1-uclibc 1 1-glibc 1-musl latest; do
    derive base "bench-$t" pop_file "busybox-$t"
  done

  push_ref pause pause:3.9 && wrap_in_list pause:3.9
  push_ref pause pause:3.6 && wrap_in_list pause:3.6
  push_ref base $K/busybox:1.29-2 && wrap_in_list $K/busybox:1.29-2
  push_ref nginx $K/nginx:1.14-2 && wrap_in_list $K/nginx:1.14-2
  push_ref httpd $K/httpd:2.4.39-4 && wrap_in_list $K/httpd:2.4.39-4
  push_ref nonewprivs $K/nonewprivs:1.3 && wrap_in_list $K/nonewprivs:1.3
  push_ref hostnet-nginx $S/hostnet-nginx-amd64:latest
  for t in 1 2 3; do push_ref f-test-image-$t $S/test-image-$t:latest; done
  push_ref f-test-image-latest $S/test-image-latest:latest
  # The digest spec pins upstream bytes; this tag exists so only that spec fails.
  push_ref f-test-image-digest $S/test-image-digest:latest
  for t in 1 2 3; do push_ref f-same-image $S/test-image-tags:$t; done
  push_ref f-test $S/test-image-tag:test
  push_ref f-all $S/test-image-tag:all
  push_ref u-1002 $S/test-image-user-uid:latest
  push_ref u-www-data $S/test-image-user-username:latest
  push_ref u-1003-1004 $S/test-image-user-uid-group:latest
  push_ref u-www-data-1004 $S/test-image-user-username-group:latest
  push_ref predef $S/test-image-predefined-group:latest
  # benchmark images, plain OCI manifests
  for t in 1.35.0-glibc 1-uclibc 1 1-glibc 1-musl latest; do push_ref "bench-$t" docker/library/busybox:$t oci; done
  push_ref base library/busybox:latest && wrap_in_list library/busybox:latest
  images_present || die "images pushed but some are still missing from $REG_ADDR"
  log "stand-in images pushed to $REG_ADDR"
}

# -------------------------------------------------------------------- config --

write_config() {
  mkdir -p "$CONF/certs.d" "$CONF/net.d" "$OUT"
  local h
  for h in "${MIRRORED_HOSTS[@]}"; do
    mkdir -p "$CONF/certs.d/$h"
    # The mirror is the server itself: no fallback to the internet.
    cat >"$CONF/certs.d/$h/hosts.toml" <<EOF
server = "http://$REG_ADDR"

[host."http://$REG_ADDR"]
  capabilities = ["pull", "resolve"]
EOF
  done
  cat >"$CONF/net.d/10-$NET_NAME.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NET_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
  cat >"$CONF/config.toml" <<EOF
# written by scripts/critest.sh
root = "$ROOT"
state = "$STATE"
cgroup_parent = "$CGROUP_PARENT"

[cni]
conf_dir = "$CONF/net.d"

[registry]
certs_dir = "$CONF/certs.d"
EOF
  # Pods must not reach beyond their bridge (the bridge plugin turns on ip_forward).
  iptables -C FORWARD -s "$SUBNET" ! -o "$BRIDGE" -j DROP 2>/dev/null ||
    iptables -I FORWARD -s "$SUBNET" ! -o "$BRIDGE" -j DROP
}

B() { "$BERTH" --config "$CONF/config.toml" --root "$ROOT" --state "$STATE" "$@"; }

start_daemon() {
  mkdir -p "$ROOT" "$STATE"
  BERTH_LOG=${BERTH_LOG:-info} setsid "$BERTH" --config "$CONF/config.toml" --root "$ROOT" --state "$STATE" \
    daemon --socket "unix://$SOCK" >"$OUT/daemon.log" 2>&1 </dev/null &
  DAEMON_PID=$!
  for _ in $(seq 100); do
    [ -S "$SOCK" ] && return
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  die "berth daemon did not come up on $SOCK; see $OUT/daemon.log"
}

# ------------------------------------------------------------------- cleanup --

remove_pods() {
  local pods
  pods=$(B -n k8s.io ps -q 2>/dev/null || true)
  [ -z "$pods" ] && return
  log "removing pods left behind: $(echo "$pods" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  B -n k8s.io rm -f $pods >/dev/null 2>&1 || log "warning: berth rm -f failed for some pods"
}

stop_pid() { # PID NAME
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "$2 (pid $pid) ignored SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

rm_cgroup_parent() {
  local d
  for d in /sys/fs/cgroup/*"$CGROUP_PARENT" /sys/fs/cgroup/unified"$CGROUP_PARENT"; do
    [ -d "$d" ] || continue
    # deepest first; rmdir only succeeds on cgroups without processes
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || log "warning: cgroup $d is still in use"
  done
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$DAEMON_PID" ]; then
    remove_pods
    stop_pid "$DAEMON_PID" "berth daemon"
  fi
  # pods the daemon could not remove (it died): the CLI reads the same state
  [ -d "$STATE" ] && remove_pods
  [ -n "$REG_PID" ] && stop_pid "$REG_PID" registry
  awk -v r="$ROOT" -v s="$STATE" '$2 ~ "^"r || $2 ~ "^"s {print $2}' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null && log "unmounted leftover $m"; done
  rm_cgroup_parent
  iptables -D FORWARD -s "$SUBNET" ! -o "$BRIDGE" -j DROP 2>/dev/null
  ip link del "$BRIDGE" 2>/dev/null
  rm -rf "/var/lib/cni/networks/$NET_NAME" "$STATE" "$CONF"
  [ "${KEEP_ROOT:-0}" = 1 ] || rm -rf "$ROOT"
  exit "$rc"
}

# ---------------------------------------------------------------------- main --

need_tools
[ "${IMAGES_ONLY:-0}" = 1 ] || pick_berth
[ ! -S "$SOCK" ] || die "$SOCK exists: another critest.sh run? (stop it first)"
mkdir -p "$OUT" "$REG_ROOT"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_registry
build_and_push_images
[ "${IMAGES_ONLY:-0}" = 1 ] && exit 0
write_config
start_daemon
log "berth daemon up (pid $DAEMON_PID, $BERTH), socket unix://$SOCK"

set +e
"$CRITEST" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" \
  --ginkgo.no-color --ginkgo.json-report="$OUT/report.json" "$@" 2>&1 | tee "$OUT/critest.log"
rc=${PIPESTATUS[0]}
set -e
if [ -s "$OUT/report.json" ]; then
  jq -r '.[0].SpecReports | map(select(.LeafNodeType == "It")) |
    "ran \(map(select(.State != "skipped" and .State != "pending")) | length): passed \(map(select(.State == "passed")) | length), failed \(map(select(.State == "failed" or .State == "panicked" or .State == "timedout")) | length), skipped \(map(select(.State == "skipped")) | length)"' \
    "$OUT/report.json" >&2 || true
fi
log "critest exit $rc; logs in $OUT"
exit "$rc"
