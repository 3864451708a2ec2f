#!/usr/bin/env bash
# The VM lab (npm run lab): boots Debian's 6.12 kernel under qemu-system-x86_64
# (TCG), with the in-tree mtty sample driver built as a module, two mtty-2
# instances, and runs the vitest suite test/lab/*.test.ts INSIDE the guest with
# the host's node against this checkout (the host's / is shared read-only over
# 9p). Exit status and a summary come back through a second, writable 9p share.
# What it relies on: docs/PROTOCOL.md §7. Build artefacts live in .lab/ (gitignored).
#
# Environment: LAB_TIMEOUT (s, default 1800) bounds the VM run; LAB_MEM (default 2G);
# LAB_FILTER passes a test-name filter (-t) to vitest in the guest; LAB_PAD_MIB
# lists the padded-mtty sizes (MiB) the QEMU volume tests migrate (default 64);
# the bridge volume test (test/lab/bridge-volume.test.ts) also reads
# LAB_VOLUME_REPS (runs per variant, medians compared), LAB_BRIDGE_WINDOW (an
# extra mapped variant with that --window) and LAB_BRIDGE_TRACE=1 (keeps the
# bridges' --trace files in the results; bench/bridge-trace.mjs reads them).
# LAB_RECORD=1 writes the traces record-traces.test.ts recorded into
# test/fixtures/traces (otherwise they are only compared with it, and a
# difference is reported loudly). `LAB_FILTER='recorded traces' LAB_RECORD=1 npm
# run lab` re-records just those.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd -P)
KVER=6.12.117+deb12-amd64
KDIR=/usr/src/linux-headers-$KVER
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/usr/lib/modules/$KVER
SRC_TARBALL=/usr/src/linux-source-6.12.tar.xz
LAB=$REPO/.lab
TIMEOUT=${LAB_TIMEOUT:-1800}
MEM=${LAB_MEM:-2G}
UUID_A=0d9a4c38-6f1b-4b52-a6f5-1ad1e3a0c0a1
UUID_B=83b8f4f2-509f-4f2f-9c1e-e6bfe0fa1001
UUID_C=5c1f0e2a-7d43-4e0b-9a57-2b8d6c3e4f10
UUID_D=e7a2b9c4-1f36-4d85-b0c2-9e4f7a1d2c30
start=$(date +%s)

say() { echo "lab: [$(( $(date +%s) - start ))s] $*"; }
die() { echo "lab: FAILED: $*" >&2; exit 1; }

# --- 1. Debian packages (the same list CI installs) ---------------------------
bash scripts/setup.sh || die "installing the Debian packages failed (scripts/setup.sh; needs root)"
for f in "$KERNEL" "$KDIR/Makefile" "$SRC_TARBALL" /usr/bin/qemu-system-x86_64 /bin/busybox /usr/bin/patch; do
  [ -e "$f" ] || die "$f is missing after scripts/setup.sh"
done
mkdir -p "$LAB"
NODE=$(command -v node) || die "node is not on PATH"
NODE=$(readlink -f "$NODE")
[ -d "$REPO/node_modules/vitest" ] || die "node_modules is missing: run npm ci first"
# The guest tests the built package (dist/), as a user imports it.
say "building dist/ (npm run build)"
npm run -s build >"$LAB/build.log" 2>&1 || { cat "$LAB/build.log" >&2; die "npm run build failed (log above)"; }
# The bridge's interposer, built here (the checkout is read-only in the guest).
node scripts/build-interposer.mjs >>"$LAB/build.log" 2>&1 || { cat "$LAB/build.log" >&2; die "building the interposer failed (log above)"; }
ls build/vfio-mig-interposer-*.so >/dev/null 2>&1 || die "no interposer library in build/ after scripts/build-interposer.mjs (is gcc installed?)"

# --- 2. mtty.ko from linux-source-6.12 (only samples/vfio-mdev/mtty.c) -------
# with our test/lab/mtty-pad.patch (migration stream padding, off by default;
# the patch says why). Rebuilt when the tarball or the patch changes.
MTTY=$LAB/mtty
PATCH=test/lab/mtty-pad.patch
stamp="$(stat -c '%s %Y' "$SRC_TARBALL") $(sha256sum <"$PATCH")"
if [ ! -f "$MTTY/mtty.ko" ] || [ "$(cat "$MTTY/stamp" 2>/dev/null)" != "$stamp" ]; then
  say "building mtty.ko (with $PATCH)"
  rm -rf "$MTTY" && mkdir -p "$MTTY"
  tar -xJf "$SRC_TARBALL" -C "$MTTY" --strip-components=3 linux-source-6.12/samples/vfio-mdev/mtty.c \
    || die "cannot extract samples/vfio-mdev/mtty.c from $SRC_TARBALL"
  patch -d "$MTTY" -p3 --quiet --no-backup-if-mismatch <"$PATCH" || die "$PATCH does not apply to $SRC_TARBALL's mtty.c"
  echo 'obj-m := mtty.o' > "$MTTY/Kbuild"
  make -s -C "$KDIR" M="$MTTY" modules >"$MTTY/build.log" 2>&1 \
    || { cat "$MTTY/build.log" >&2; die "building mtty.ko failed (log above)"; }
  echo "$stamp" >"$MTTY/stamp"
fi

# --- 2b. the Debian 13 root with QEMU 10 (debootstrap, cached in .lab/) ------
say "checking the Debian 13 root (QEMU 10)"
bash test/lab/trixie-root.sh "$LAB/trixie" || die "building the Debian 13 root with QEMU 10 failed"

# --- 3. initramfs: busybox, the modules (deps first, .ko.xz decompressed), /init ---
INITRD=$LAB/initramfs.cpio.gz
ROOT=$LAB/initramfs
if [ ! -f "$INITRD" ] || [ "$MTTY/mtty.ko" -nt "$INITRD" ] || [ test/lab/init.sh -nt "$INITRD" ] || [ test/lab/run.sh -nt "$INITRD" ]; then
  say "building the initramfs"
  rm -rf "$ROOT" && mkdir -p "$ROOT"/{bin,dev,proc,sys,host,modules}
  cp /bin/busybox "$ROOT/bin/busybox"
  # modules.dep lists each module's dependencies (deepest last): load in reverse.
  declare -A seen=()
  order=()
  add_module() {
    local rel=$1 line deps d
    [ -n "${seen[$rel]:-}" ] && return
    seen[$rel]=1
    line=$(grep -E "^${rel//./\\.}:" "$MODDIR/modules.dep") || die "$rel is not in $MODDIR/modules.dep"
    deps=${line#*:}
    for d in $(echo "$deps" | tr ' ' '\n' | tac); do add_module "$d"; done
    order+=("$rel")
  }
  for m in fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p drivers/vfio/vfio \
           drivers/vfio/vfio_iommu_type1 drivers/vfio/mdev/mdev; do
    add_module "kernel/$m.ko.xz"
  done
  : >"$ROOT/modules/order"
  for rel in "${order[@]}"; do
    name=$(basename "$rel" .ko.xz)
    xz -dc "$MODDIR/$rel" >"$ROOT/modules/$name.ko" || die "cannot decompress $rel"
    echo "$name" >>"$ROOT/modules/order"
  done
  for d in $(modinfo -F depends "$MTTY/mtty.ko" | tr ',' ' '); do
    grep -qx "$d" "$ROOT/modules/order" || die "mtty.ko needs module $d, which the initramfs lacks"
  done
  cp "$MTTY/mtty.ko" "$ROOT/modules/mtty.ko"
  echo mtty >>"$ROOT/modules/order"
  cp test/lab/init.sh "$ROOT/init"
  chmod +x "$ROOT/init"
  (cd "$ROOT" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
fi

# --- 4. boot ------------------------------------------------------------------
RESULTS=$LAB/results
CONSOLE=$LAB/console.log
rm -rf "$RESULTS" && mkdir -p "$RESULTS"
# Sourced by the guest's sh: the filter (free text, e.g. two words) is single-quoted.
filter=${LAB_FILTER:-}
cat >"$RESULTS/lab.env" <<EOF
REPO=$REPO
NODE=$NODE
UUID_A=$UUID_A
UUID_B=$UUID_B
UUID_C=$UUID_C
UUID_D=$UUID_D
TRIXIE=$LAB/trixie
LAB_FILTER=$(printf '%q' "${LAB_FILTER:-}")
LAB_PAD_MIB=$(printf '%q' "${LAB_PAD_MIB:-}")
LAB_BRIDGE_TRACE=$(printf '%q' "${LAB_BRIDGE_TRACE:-}")
LAB_VOLUME_REPS=$(printf '%q' "${LAB_VOLUME_REPS:-}")
LAB_BRIDGE_WINDOW=$(printf '%q' "${LAB_BRIDGE_WINDOW:-}")
EOF
say "booting $KVER under qemu-system-x86_64 (TCG, timeout ${TIMEOUT}s); console: $CONSOLE"
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m "$MEM" -nographic -no-reboot -nic none \
  -kernel "$KERNEL" -initrd "$INITRD" \
  -append "console=ttyS0 panic=-1 oops=panic loglevel=4" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$RESULTS,mount_tag=results,security_model=none" \
  </dev/null >"$CONSOLE" 2>&1 &
QEMU=$!
cleanup() { kill "$QEMU" 2>/dev/null || true; }
trap cleanup EXIT

# Console lines without carriage returns and terminal escapes (SeaBIOS clears the screen).
clean() { tr -d '\r' | sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' -e 's/^/  guest| /'; }

# Watch the console: print it, stop at a kernel BUG/Oops/WARNING, bound the time.
fatal=""
printed=0
while kill -0 "$QEMU" 2>/dev/null; do
  sleep 0.5
  lines=$(wc -l <"$CONSOLE")
  if [ "$lines" -gt "$printed" ]; then
    sed -n "$((printed + 1)),${lines}p" "$CONSOLE" | clean
    printed=$lines
  fi
  if grep -qE 'BUG:|Oops|Kernel panic|general protection fault|WARNING: CPU' "$CONSOLE"; then
    fatal=$(grep -m1 -E 'BUG:|Oops|Kernel panic|general protection fault|WARNING: CPU' "$CONSOLE" | tr -d '\r')
    sleep 2 # let the trace reach the log
    break
  fi
  if [ $(( $(date +%s) - start )) -gt "$TIMEOUT" ]; then
    fatal="timeout: the VM did not finish within ${TIMEOUT}s (LAB_TIMEOUT)"
    break
  fi
done
lines=$(wc -l <"$CONSOLE")
[ "$lines" -gt "$printed" ] && sed -n "$((printed + 1)),${lines}p" "$CONSOLE" | clean
kill "$QEMU" 2>/dev/null || true
wait "$QEMU" 2>/dev/null || true
trap - EXIT
elapsed=$(( $(date +%s) - start ))

if [ -n "$fatal" ]; then
  grep -A40 -m1 -E 'BUG:|Oops|Kernel panic|general protection fault|WARNING: CPU' "$CONSOLE" | tr -d '\r' >&2 || true
  die "$fatal (after ${elapsed}s; full console in $CONSOLE)"
fi
if [ ! -f "$RESULTS/status" ]; then
  stage=$(grep -a 'LAB-STAGE:' "$CONSOLE" | tail -1 | tr -d '\r' | sed 's/.*LAB-STAGE: //')
  err=$(grep -a 'LAB-ERROR:' "$CONSOLE" | tail -1 | tr -d '\r' | sed 's/.*LAB-ERROR: //')
  die "the guest stopped without a result; last stage: ${stage:-none (did the kernel boot?)}${err:+; error: $err} (console: $CONSOLE)"
fi
status=$(cat "$RESULTS/status")
echo "lab: ---- summary (guest) ----"
cat "$RESULTS/summary.txt" 2>/dev/null || echo "(no summary)"
echo "lab: guest exit status $status, wall time ${elapsed}s"
# The recorded traces against the committed fixtures (test/lab/fixtures.mjs).
if [ -f "$RESULTS/traces/recorded.json" ]; then
  fstatus=0
  node test/lab/fixtures.mjs "$RESULTS/traces" test/fixtures/traces ${LAB_RECORD:+--write} || fstatus=$?
  # A recording equal to an accepted variant (test/fixtures/traces/variants) is unchanged. Any other
  # difference is reported, not fatal: real QEMU 7.2 decides per run, from RAM timing, whether the
  # device gets a pre-copy iteration before the switchover (docs/trace-format.md "Variants"), so a
  # recording can differ without any change of ours. The committed fixtures and variants are what the
  # unit tests replay and compare the models with.
  if [ "$fstatus" -ne 0 ]; then
    echo "lab: WARNING: the recorded traces differ from test/fixtures/traces (above); check the diff" >&2
  fi
fi
exit "$status"
