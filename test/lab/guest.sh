#!/bin/sh
# Runs inside the lab VM, chrooted into the host's (read-only) tree: creates the
# two mtty-2 instances and runs the lab's vitest suite with the host's node.
# Everything that writes goes to the guest's /tmp (tmpfs) or the results share.
set -u
RESULTS=/run/results
. $RESULTS/lab.env
export HOME=/tmp TMPDIR=/tmp PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export NO_COLOR=1 FORCE_COLOR=0 CI=1
stage() { echo "LAB-STAGE: $*"; }
finish() { # status, summary line
  echo "$2" >"$RESULTS/summary.txt"
  echo "$1" >"$RESULTS/status"
  sync
  exit "$1"
}

stage mdev
TYPE=/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2
[ -d "$TYPE" ] || finish 2 "mtty did not register its mdev types ($TYPE missing): did mtty.ko load?"
for u in "$UUID_A" "$UUID_B" "$UUID_C" "$UUID_D"; do
  echo "$u" >"$TYPE/create" || finish 2 "creating mtty-2 instance $u failed"
done
for u in "$UUID_A" "$UUID_B" "$UUID_C" "$UUID_D"; do
  g=$(readlink "/sys/bus/mdev/devices/$u/iommu_group") || finish 2 "mdev $u has no iommu_group"
  echo "lab: mdev $u in iommu group ${g##*/}"
done
ls -l /dev/vfio

# Loopback, for migrations over a live socket between two QEMUs.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

stage qemu10-root
# QEMU 10 runs chrooted in the Debian 13 root, which is part of the read-only host
# tree: mount on its existing mount points only. /tmp is shared so that sockets and
# migration files have the same path for both QEMUs.
mount -t proc proc "$TRIXIE/proc" && mount -t sysfs sysfs "$TRIXIE/sys" \
  && mount -t devtmpfs devtmpfs "$TRIXIE/dev" && mount --bind /tmp "$TRIXIE/tmp" \
  || finish 2 "mounting proc/sys/dev/tmp in the Debian 13 root $TRIXIE failed"
chroot "$TRIXIE" /usr/bin/env -i PATH=/usr/bin:/bin qemu-system-x86_64 --version | head -1

stage vitest
cd "$REPO" || finish 2 "cannot cd to $REPO"
export LAB_DEV_A="$UUID_A" LAB_DEV_B="$UUID_B" LAB_DEV_C="$UUID_C" LAB_DEV_D="$UUID_D" LAB_TRIXIE="$TRIXIE" LAB_TMP=/tmp/vfio-mig-lab LAB_RESULTS="$RESULTS" LAB_PAD_MIB="${LAB_PAD_MIB:-}" LAB_BRIDGE_TRACE="${LAB_BRIDGE_TRACE:-}" LAB_VOLUME_REPS="${LAB_VOLUME_REPS:-}" LAB_BRIDGE_WINDOW="${LAB_BRIDGE_WINDOW:-}"
set -- run --config test/lab/vitest.lab.config.ts --configLoader runner
[ -n "${LAB_FILTER:-}" ] && set -- "$@" -t "$LAB_FILTER"
{ "$NODE" node_modules/vitest/vitest.mjs "$@"; echo $? >/tmp/vitest-status; } 2>&1 | tee /tmp/vitest.log
vstatus=$(cat /tmp/vitest-status)
if [ -f "$RESULTS/vitest.json" ]; then
  summary=$("$NODE" -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const failed = r.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === "failed").map((a) => "  FAILED " + a.fullName));
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped, of ${r.numTotalTests}; files: ${r.testResults.length}, ${r.testResults.filter((f) => f.status === "failed").length} failed`);
    for (const f of failed) console.log(f);
    process.exit(r.success && r.numTotalTests > 0 ? 0 : 1);
  ' "$RESULTS/vitest.json")
  status=$?
  [ "$status" -eq 0 ] && status=$vstatus
else
  summary="vitest wrote no report (it failed before running tests); see the console output"
  status=1
fi
cp /tmp/vitest.log "$RESULTS/vitest.log"
finish "$status" "$summary"
