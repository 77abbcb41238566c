#!/usr/bin/env bash
# README's test command: installs the real tools the tests drive when they are
# missing (apt-get, as root), then runs every test of the workspace.
#
#   scripts/test.sh [cargo test arguments…]
#
# The end-to-end tests run skopeo, umoci, containerd (and ctr), docker-registry and
# dockerd (docker.io; servers start on loopback or a socket in a temp dir and stop by
# PID); base images are built from the static busybox (busybox-static), which is also
# the program `ctr run` starts in an unpacked image; pigz, zstd and attr check layers;
# Go and golang-github-containerd-stargz-snapshotter-dev build the eStargz verifier
# (tests/go/estargz), golang-github-vbatts-tar-split-dev the tar-split generator
# (tests/go/tarsplit); gcc builds the C of libdeflate, zstd and SQLite; debootstrap,
# dpkg-query and rpm make and check the package databases the SBOM tests read; python3
# runs PyPI's in-toto-attestation on every statement and spdx-tools on every SBOM
# (both installed into one virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."

# command → Debian package
declare -A need=(
  [skopeo]=skopeo [umoci]=umoci [containerd]=containerd [ctr]=containerd
  [docker-registry]=docker-registry [dockerd]=docker.io [pigz]=pigz [zstd]=zstd [getfattr]=attr [gcc]=gcc
  [go]=golang-go [debootstrap]=debootstrap [dpkg-query]=dpkg [rpm]=rpm [python3]=python3
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 \
    || missing+=("${need[$cmd]}")
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
# The eStargz test builds a verifier against stargz-snapshotter's Go library.
[ -d /usr/share/gocode/src/github.com/containerd/stargz-snapshotter/estargz ] \
  || missing+=(golang-github-containerd-stargz-snapshotter-dev)
# The zstd:chunked test compares its tar-split with tar-split's own Go packer.
[ -d /usr/share/gocode/src/github.com/vbatts/tar-split/tar/asm ] \
  || missing+=(golang-github-vbatts-tar-split-dev)
# Debian's plain busybox package also installs /bin/busybox, but linked dynamically:
# base images need the static one.
if command -v dpkg-query >/dev/null 2>&1; then
  # No pipe: with pipefail, grep -q closing early could fail the dpkg-query side.
  [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] \
    || missing+=(busybox-static)
else
  [ -x /bin/busybox ] || missing+=(busybox-static)
fi

# The validators' virtualenv needs venv and ensurepip (python3-venv on Debian).
command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1 \
  && missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: the tests need: ${missing[*]}" >&2
    echo "install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}) and run again" >&2
    exit 2
  fi
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

# Validators from PyPI, in one virtualenv made once: in-toto-attestation checks every
# in-toto statement (run through STRATA_PYTHON), spdx-tools' pyspdxtools every SBOM (on
# PATH).
venv=${STRATA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/venv}
if ! { "$venv/bin/python" -c 'import in_toto_attestation' && [ -x "$venv/bin/pyspdxtools" ]; } >/dev/null 2>&1; then
  echo "scripts/test.sh: installing in-toto-attestation and spdx-tools (PyPI) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q in-toto-attestation spdx-tools
fi
export STRATA_PYTHON="$venv/bin/python"
export PATH="$venv/bin:$PATH"

exec cargo test --workspace --locked "$@"
