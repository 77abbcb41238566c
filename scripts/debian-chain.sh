#!/usr/bin/env bash
# The chain of real Debian trees the bench and the SBOM tests export, built once into
# a cache directory (each tree an independent `cp -a` copy of the one before):
#
#   rootfs          debootstrap --variant=minbase bookworm
#   debian/python3  rootfs + python3 (apt-get in a chroot)
#   debian/slim     python3 − /usr/share/doc, /usr/share/man, the apt lists, with
#                   /etc/apt/apt.conf.d removed and made again with other content
#   debian/touched  slim with one file changed and one added
#
#   scripts/debian-chain.sh CACHE [rootfs|python3|slim|touched]
#
# builds the chain up to the tree named (default: touched); trees already there are
# kept. Needs root, debootstrap and a Debian mirror: STRATA_DEBIAN_MIRROR, else the
# one apt is configured with for bookworm, else deb.debian.org. A tree is built under
# a `.tmp` name and moved into place only when complete.
set -euo pipefail

cache=${1:?usage: debian-chain.sh CACHE [rootfs|python3|slim|touched]}
upto=${2:-touched}
case $upto in
  rootfs) level=0 ;; python3) level=1 ;; slim) level=2 ;; touched) level=3 ;;
  *) echo "debian-chain.sh: no tree named $upto (rootfs, python3, slim or touched)" >&2; exit 2 ;;
esac
mkdir -p "$cache/debian"
rootfs=$cache/rootfs python3=$cache/debian/python3 slim=$cache/debian/slim touched=$cache/debian/touched

mirror=${STRATA_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(awk 'BEGIN { RS = "" }
    /Suites:[^\n]*bookworm/ && match($0, /URIs:[ \t]*[^ \t\n]+/) {
      uri = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", uri); print uri; exit
    }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && / bookworm/ {
    for (i = 2; i <= NF; i++) if ($i ~ /^http/) { print $i; exit } }' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

if [ ! -e "$rootfs/etc/debian_version" ]; then
  echo "building $rootfs: debootstrap --variant=minbase bookworm ($mirror)" >&2
  rm -rf "$rootfs.tmp"
  debootstrap --variant=minbase bookworm "$rootfs.tmp" "$mirror" >/dev/null
  mv "$rootfs.tmp" "$rootfs"
fi

if [ "$level" -ge 1 ] && [ ! -e "$python3/usr/bin/python3" ]; then
  echo "building $python3: apt-get install python3 in a chroot" >&2
  tmp=$python3.tmp
  rm -rf "$tmp"
  cp -a "$rootfs" "$tmp"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  (
    mount -t proc proc "$tmp/proc"
    trap 'umount "$tmp/proc"' EXIT
    chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    chroot "$tmp" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends python3 >/dev/null
    chroot "$tmp" apt-get clean
  )
  # Moved once the subshell's trap has unmounted /proc.
  mv "$tmp" "$python3"
fi

if [ "$level" -ge 2 ] && [ ! -e "$slim/etc/apt/apt.conf.d/99strata-bench" ]; then
  tmp=$slim.tmp
  rm -rf "$tmp" "$slim"
  cp -a "$python3" "$tmp"
  rm -rf "$tmp/usr/share/doc" "$tmp/usr/share/man"
  find "$tmp/var/lib/apt/lists" -mindepth 1 -delete
  rm -rf "$tmp/etc/apt/apt.conf.d"
  mkdir "$tmp/etc/apt/apt.conf.d"
  echo 'APT::Install-Recommends "false";' >"$tmp/etc/apt/apt.conf.d/99strata-bench"
  echo 'Acquire::Languages "none";' >"$tmp/etc/apt/apt.conf.d/98languages"
  mv "$tmp" "$slim"
fi

if [ "$level" -ge 3 ] && [ ! -e "$touched/etc/strata-bench-touched" ]; then
  tmp=$touched.tmp
  rm -rf "$tmp" "$touched"
  cp -a "$slim" "$tmp"
  echo changed >>"$tmp/etc/motd"
  touch "$tmp/etc/strata-bench-touched"
  mv "$tmp" "$touched"
fi
