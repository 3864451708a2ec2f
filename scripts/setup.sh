#!/usr/bin/env bash
# Installs the Debian packages the tests and the VM lab need, if missing.
# Needs root (apt-get). Safe to run again: installed packages are skipped.
set -euo pipefail
KVER=6.12.117+deb12
PACKAGES=(
  gcc
  libc6-dev                          # <stdio.h> etc. for the C oracles: only a Recommends of gcc
  "linux-headers-${KVER}-common"     # uapi vfio.h for the ABI oracle
  "linux-headers-${KVER}-amd64"      # building mtty.ko for the lab
  linux-source-6.12                  # vfio_main.c (FSM oracle) and mtty.c
  "linux-image-${KVER}-amd64-unsigned"
  qemu-system-x86
  busybox-static
  graphviz                           # renders `vfio-mig fsm --format dot` in a test
  xz-utils cpio kmod
  make                               # building mtty.ko out of tree (lab)
  patch                              # test/lab/mtty-pad.patch onto mtty.c (lab)
  debootstrap                        # the lab's Debian 13 root with QEMU 10
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run as root (sudo npm run setup)" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive INITRD=No
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
