#!/bin/busybox sh
# /init of berth's test guest, stage 1 (PID 1 in the initramfs).
# Loads the modules that reach the root, mounts the host's root (virtio-fs,
# read-only) under a tmpfs overlay, and switches to it; stage2.sh continues
# there. Any failure prints the fail marker and powers off, so the host never
# waits for its timeout on a guest that cannot boot.
/bin/busybox --install -s /bin
export PATH=/bin
. /etc/berth-vm/conf

fail() {
	echo "berth-vm: $*"
	echo "BERTH-VM-FAIL $NONCE $*"
	poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
	insmod "/lib/modules/$m" || fail "insmod $m"
done </etc/berth-vm/modules

mkdir -p /host /rw /newroot
mount -t virtiofs -o ro "$FS_TAG" /host || fail "mount of virtio-fs $FS_TAG"
# Writes land in guest memory; the host's files are never touched.
mount -t tmpfs -o mode=0755 berth-vm-rw /rw || fail "tmpfs for the overlay's upper dir"
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work berth-vm-root /newroot ||
	fail "overlay of tmpfs over the virtio-fs root"

# /run is a fresh tmpfs, as on a booted system; stage 2 and busybox live in
# it, so nothing of berth's appears in the host's tree.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "tmpfs on /run"
mkdir -p /newroot/run/berth-vm/host /newroot/run/berth-vm/rw
cp /bin/busybox /etc/berth-vm/* /newroot/run/berth-vm/
mount --move /host /newroot/run/berth-vm/host
mount --move /rw /newroot/run/berth-vm/rw
for d in dev proc sys; do
	mount --move "/$d" "/newroot/$d" || fail "moving /$d"
done
exec switch_root /newroot /run/berth-vm/busybox sh /run/berth-vm/stage2.sh
