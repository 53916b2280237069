#!/usr/bin/env bash
# Builds, once per suite and package list, the Debian root filesystem the
# node image (`make image`) stands on, from Debian's packages: no container
# registry is needed. It prints the root's directory. The root is cached
# outside the work tree (SANDPIT_IMAGE_CACHE, default
# /var/cache/sandpit/image) under a key of the suite, this package list and
# the Python kernel's requirements, so a second `make image` reuses it.
#
# Usage: scripts/image-base.sh [SUITE]   (as root; default bookworm)
set -euo pipefail

suite=${1:-bookworm}
cache=${SANDPIT_IMAGE_CACHE:-/var/cache/sandpit/image}
here=$(cd "$(dirname "$0")" && pwd)
kernel_req="$here/python-kernel-requirements.txt"

# What a node execs or hands its sandboxes, which see the node's /usr as
# their userland (internal/template/base.go): the same runtime list as
# scripts/setup.sh, plus e2fsprogs (mkfs.ext4 for per-sandbox disks) and
# nodejs/npm. Build tools (gcc, make) stay out.
packages=(
  ca-certificates git sudo procps iproute2 e2fsprogs debootstrap
  python3 python3-ipykernel python3-matplotlib python3-pandas python3-numpy
  python3-pil python3-pip
  nodejs npm node-typescript r-cran-irkernel
)

if [ "$(id -u)" -ne 0 ]; then
  echo "image-base: run as root (debootstrap and chroot)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "image-base: debootstrap is missing (scripts/setup.sh installs it)" >&2; exit 1; }

key="$suite-$({ printf '%s\n' "${packages[@]}"; cat "$kernel_req"; } | sha256sum | cut -c1-12)"
root="$cache/$key"
# The marker is beside the root, not in it: the image holds the root only.
if [ -e "$root.done" ]; then
  echo "$root"
  exit 0
fi

mkdir -p "$cache"
tmp="$cache/.$key.tmp"
# Debian's packages, the long part, are kept through a failure of what
# follows.
if [ ! -e "$tmp.packages" ]; then
  rm -rf "$tmp"
  echo "image-base: debootstrap --variant=minbase $suite into $root (once; several minutes)" >&2
  debootstrap --variant=minbase "$suite" "$tmp" >&2
  # Packages' services are not started in a chroot.
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
  chmod 755 "$tmp/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  chroot "$tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  chroot "$tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
  touch "$tmp.packages"
fi

# The Python kernel's packages beyond Debian's, as scripts/setup.sh
# installs them on a host, by this host's pip (its index and CA settings)
# into the root: the same wheels, the suite's Python being the host's.
kernel_lib=/usr/local/lib/sandpit/python
host_py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
root_py=$(chroot "$tmp" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$host_py" != "$root_py" ]; then
  echo "image-base: this host's Python is $host_py, $suite's $root_py: its pip would fetch wheels the image cannot load (build on a host of the same suite)" >&2
  exit 1
fi
rm -rf "$tmp$kernel_lib"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  --no-deps --require-hashes --only-binary=:all: --target "$tmp$kernel_lib" -r "$kernel_req" >&2
cp "$kernel_req" "$tmp$kernel_lib/.requirements.txt"

# Nothing of this machine or of the build stays in the image.
chroot "$tmp" apt-get clean
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/log/* "$tmp"/tmp/* \
  "$tmp/usr/sbin/policy-rc.d" "$tmp/root/.cache"
: >"$tmp/etc/resolv.conf"
echo "sandpit" >"$tmp/etc/hostname"
# A base layer cmd/mkimage cached from an earlier root of this key is stale.
rm -rf "$root" "$root".layer.tar.gz
mv "$tmp" "$root"
rm -f "$tmp.packages"
date -u +%FT%TZ >"$root.done"
echo "$root"
