# Stage 2 of berth's test guest: PID 1 in the overlay root, which is the
# host's root as the host sees it. Sets the guest up as a booted pure cgroup
# v2 system would be, runs the command, reports its exit status on the
# console (the host reads the marker line) and powers off.
BB=/run/berth-vm/busybox
. /run/berth-vm/conf

fail() {
	echo "berth-vm: $*"
	echo "BERTH-VM-FAIL $NONCE $*"
	$BB poweroff -f
}

$BB mkdir -p /dev/pts /dev/shm
# what udev and systemd would have made: bash's process substitution needs /dev/fd
$BB ln -sfn /proc/self/fd /dev/fd
$BB ln -sf /proc/self/fd/0 /dev/stdin
$BB ln -sf /proc/self/fd/1 /dev/stdout
$BB ln -sf /proc/self/fd/2 /dev/stderr
$BB mount -t devpts -o mode=0620,ptmxmode=0666 devpts /dev/pts || fail "devpts"
$BB mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || fail "tmpfs on /dev/shm"
$BB mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "tmpfs on /tmp"

# The unified hierarchy alone (the kernel runs with cgroup_no_v1=all).
$BB mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || fail "cgroup2 on /sys/fs/cgroup"
echo "$CONTROLLERS" >/sys/fs/cgroup/cgroup.subtree_control ||
	fail "enabling $CONTROLLERS in the root cgroup (available: $(cat /sys/fs/cgroup/cgroup.controllers))"
# A cgroup with controllers enabled for its children holds no processes of
# its own (v2's no-internal-processes rule, the root excepted): everything
# the command starts lives in a leaf, as under systemd's init.scope.
$BB mkdir -p /sys/fs/cgroup/init.scope
echo $$ >/sys/fs/cgroup/init.scope/cgroup.procs || fail "moving PID 1 into init.scope"

# The host's /lib/modules has nothing for this kernel: show it the guest
# kernel's own, from the host's berth-owned copy, so modprobe works.
$BB mkdir -p "/lib/modules/$KVER"
$BB mount --bind "$KDIR/lib/modules/$KVER" "/lib/modules/$KVER" || fail "bind mount of the guest kernel's modules"

$BB hostname berth-vm
$BB ip link set lo up || fail "loopback up"
# Kernel messages (an OOM kill's report) would interleave with the command's
# output on the same console; `dmesg` still has them.
$BB dmesg -n 1

echo "BERTH-VM-READY $NONCE $($BB cut -d' ' -f1 /proc/uptime)"
(
	cd "$WORKDIR" || exit 125
	. /run/berth-vm/env
	. /run/berth-vm/command # set -- the command and its arguments
	exec "$@"
) </dev/null
rc=$?
echo
echo "BERTH-VM-EXIT $NONCE $rc"
$BB sync
$BB poweroff -f
