#!/usr/bin/env bash
# Installs what sandpit needs to build, run and test on Debian/Ubuntu, as
# root. Idempotent and quick when everything is present.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (sandboxes need namespaces, idmapped mounts and cgroups)" >&2
  exit 1
fi

# Runtime (`make run`): sudo inside sandboxes, the code interpreter's
# kernels, node, debootstrap for Debian templates.
packages=(
  ca-certificates git make gcc sudo procps iproute2
  python3 python3-ipykernel python3-matplotlib python3-pandas python3-numpy
  python3-pil python3-pip
  node-typescript r-cran-irkernel debootstrap
)
# Tests only (`scripts/setup.sh test`, what `make test` runs): tmux
# (terminal tests), the peers the benchmarks compare against, python3-venv
# (the Python suites' pinned SDKs), chromium and its driver (the Gradio
# example in a headless browser); iptables and Docker (below) for sandbox
# egress beside a real dockerd, which the test runs in a network namespace
# of its own; openssl and curl for the test Kubernetes control plane
# (test/cluster: service-account keys, health checks). A host that only
# runs sandpit gets none of them.
tests=false
[ "${1:-}" = test ] && tests=true
if $tests; then
  packages+=(
    tmux runc crun bubblewrap runsc
    python3-venv chromium chromium-driver
    iptables curl openssl
  )
fi

missing=()
# Node may come from elsewhere (e.g. NodeSource, whose nodejs bundles npm):
# take Debian's only when there is none.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Docker may come from Docker's own packages, which conflict with Debian's.
if $tests; then
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
fi
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages' services are not started here: a Docker started on this
  # host would change its firewall (FORWARD's policy to drop), and the
  # tests need only its binaries.
  no_start=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    no_start=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$no_start"
    chmod 755 "$no_start"
    trap 'rm -f "$no_start"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$no_start" ]; then
    rm -f "$no_start"
    trap - EXIT
  fi
fi

# The Python kernel's packages beyond Debian's (E2B's chart extractor and
# pydantic 2), pinned with hashes, in a directory only the kernel puts on its
# path. The copy of the requirements inside says what is installed.
kernel_lib=/usr/local/lib/sandpit/python
kernel_req="$(dirname "$0")/python-kernel-requirements.txt"
if ! cmp -s "$kernel_req" "$kernel_lib/.requirements.txt"; then
  echo "setup: installing the Python kernel's packages into $kernel_lib"
  rm -rf "$kernel_lib.new"
  /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --require-hashes --only-binary=:all: --target "$kernel_lib.new" -r "$kernel_req"
  cp "$kernel_req" "$kernel_lib.new/.requirements.txt"
  rm -rf "$kernel_lib"
  mv "$kernel_lib.new" "$kernel_lib"
fi

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH=/usr/local/go/bin:$PATH
  else
    echo "setup: Go is missing: install Go 1.26 or newer (https://go.dev/dl/) and re-run" >&2
    exit 1
  fi
fi
go mod download
