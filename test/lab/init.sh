#!/bin/busybox sh
# /init of the lab's initramfs (busybox): load the modules, mount the host's /
# (read-only 9p) and the results share, chroot into the host tree and run
# test/lab/guest.sh there, then power off. Every step announces itself with
# LAB-STAGE so the host can say where a failed boot stopped.
/bin/busybox --install -s /bin
export PATH=/bin
stage() { echo "LAB-STAGE: $*"; }
fail() { echo "LAB-ERROR: $*"; poweroff -f; sleep 5; exit 1; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

stage modules
for m in $(cat /modules/order); do
  insmod "/modules/$m.ko" || fail "insmod $m failed"
done

stage mount-host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288 hostroot /host || fail "mounting the host's / over 9p failed"
mount -t tmpfs tmpfs /host/tmp || fail "tmpfs on /tmp"
mount -t tmpfs tmpfs /host/run || fail "tmpfs on /run"
mkdir -p /host/run/results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 results /host/run/results || fail "mounting the results share failed"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
[ -f /host/run/results/lab.env ] || fail "lab.env missing from the results share"
. /host/run/results/lab.env
# The checkout gets its own share, mounted at its own path after the tmpfs
# mounts: a clone under /tmp or /run (CI's may be) would be hidden otherwise.
mkdir -p "/host$REPO" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288 repo "/host$REPO" || fail "mounting the checkout $REPO over 9p failed"

stage chroot
chroot /host /bin/sh "$REPO/test/lab/guest.sh"
echo "LAB-STAGE: guest script exited with $?"
sync
umount /host/run/results 2>/dev/null
poweroff -f
