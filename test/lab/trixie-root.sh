#!/usr/bin/env bash
# Builds the lab's Debian 13 ("trixie") root with QEMU 10, once, and keeps it
# between runs: the guest runs that QEMU in a chroot (the host tree is shared
# read-only, so nothing inside the root is written at run time).
#   usage: trixie-root.sh ROOT
# Rebuilt when ROOT is missing, when its stamp (package list + mirror) differs,
# or when it is older than 30 days (security updates). Needs root and debootstrap.
set -euo pipefail
ROOT=$1
PACKAGES="qemu-system-x86 qemu-system-data seabios ipxe-qemu procps"
# The machine's own Debian mirror (deb822 or one-line sources), else Debian's CDN.
mirror=$(grep -hsoE '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/*.sources | head -1 | sed 's/^URIs: *//')
[ -n "$mirror" ] || mirror=$(grep -hsoE '^deb +http[^ ]*/debian/? ' /etc/apt/sources.list | head -1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
mirror=${mirror%/}
security=${mirror%/debian}/debian-security
stamp="trixie minbase | $PACKAGES | $mirror"

if [ -f "$ROOT/.vfio-mig-stamp" ] && [ "$(cat "$ROOT/.vfio-mig-stamp")" = "$stamp" ] \
   && [ -z "$(find "$ROOT/.vfio-mig-stamp" -mtime +30)" ] && [ -x "$ROOT/usr/bin/qemu-system-x86_64" ]; then
  exit 0
fi
command -v debootstrap >/dev/null || { echo "trixie-root: debootstrap is missing (scripts/setup.sh installs it)" >&2; exit 1; }
echo "trixie-root: building $ROOT from $mirror (debootstrap, then $PACKAGES)"
rm -rf "$ROOT.tmp"
debootstrap --variant=minbase trixie "$ROOT.tmp" "$mirror" >"$ROOT.log" 2>&1 \
  || { tail -20 "$ROOT.log" >&2; echo "trixie-root: debootstrap failed (log: $ROOT.log)" >&2; exit 1; }
printf '#!/bin/sh\nexit 101\n' >"$ROOT.tmp/usr/sbin/policy-rc.d"   # no services start in the chroot
chmod +x "$ROOT.tmp/usr/sbin/policy-rc.d"
cat >"$ROOT.tmp/etc/apt/sources.list" <<EOF
deb $mirror trixie main
deb $mirror trixie-updates main
deb $security trixie-security main
EOF
mounts=()
cleanup() { for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mount -t proc proc "$ROOT.tmp/proc" && mounts+=("$ROOT.tmp/proc")
mount --bind /dev "$ROOT.tmp/dev" && mounts+=("$ROOT.tmp/dev")
chroot "$ROOT.tmp" apt-get update -qq >>"$ROOT.log" 2>&1 \
  && DEBIAN_FRONTEND=noninteractive chroot "$ROOT.tmp" apt-get install -y -qq --no-install-recommends $PACKAGES >>"$ROOT.log" 2>&1 \
  || { tail -20 "$ROOT.log" >&2; echo "trixie-root: installing QEMU 10 failed (log: $ROOT.log)" >&2; exit 1; }
chroot "$ROOT.tmp" apt-get clean
cleanup; mounts=()
chroot "$ROOT.tmp" qemu-system-x86_64 --version | head -1
echo "$stamp" >"$ROOT.tmp/.vfio-mig-stamp"
rm -rf "$ROOT" && mv "$ROOT.tmp" "$ROOT"
echo "trixie-root: done ($(du -sh "$ROOT" | cut -f1))"
