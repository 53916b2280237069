#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their Go modules and caches them outside
# the work tree, keyed by version, so CI pays the ~5 minute apiserver build once
# per version. kubectl comes from the machine when it has one; otherwise it is
# built from the same wrapper module as kube-apiserver.
#
# Usage: test/cluster/build-bins.sh            (prints the cache directories)
# Env:   SANDPIT_CLUSTER_CACHE (default /var/cache/sandpit)
set -euo pipefail

KUBE_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.7.3
CACHE=${SANDPIT_CLUSTER_CACHE:-/var/cache/sandpit}
KUBE_DIR=$CACHE/kube-$KUBE_VERSION
ETCD_DIR=$CACHE/etcd-$ETCD_VERSION
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { echo "build-bins: $*" >&2; }

# One build at a time per cache: a second caller waits, then finds the
# binaries there.
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9

# A wrapper module per tool: k8s.io/kubernetes is not meant to be required
# (its go.mod replaces every staging module with ./staging/...), so the
# wrapper replaces each of them with its published v0.X twin.
build_kube() {
	local want=("$@") missing=()
	for b in "${want[@]}"; do [[ -x $KUBE_DIR/$b ]] || missing+=("$b"); done
	((${#missing[@]})) || return 0
	local w=$CACHE/build/kube-$KUBE_VERSION
	mkdir -p "$w" "$KUBE_DIR"
	if [[ ! -f $w/go.mod ]]; then
		log "preparing wrapper module for k8s.io/kubernetes $KUBE_VERSION"
		local modjson gomod
		modjson=$(cd "$w" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION")
		gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$modjson")
		{
			echo "module sandpit.local/kubewrap"
			echo
			echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
			echo
			echo "require k8s.io/kubernetes $KUBE_VERSION"
			echo
			grep -oE 'k8s.io/[a-z0-9-]+ => \./staging/src/k8s.io/[a-z0-9-]+' "$gomod" |
				awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
		} >"$w/go.mod.tmp"
		mv "$w/go.mod.tmp" "$w/go.mod"
		cat >"$w/tools.go" <<'GO'
//go:build tools

// Package kubewrap only pins the commands the sandpit test cluster builds.
package kubewrap

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
		(cd "$w" && go mod tidy >&2)
	fi
	for b in "${missing[@]}"; do
		log "building $b $KUBE_VERSION (minutes on a small machine)"
		(cd "$w" && go build -trimpath -ldflags=-s -o "$KUBE_DIR/$b.tmp" "k8s.io/kubernetes/cmd/$b")
		mv "$KUBE_DIR/$b.tmp" "$KUBE_DIR/$b"
	done
}

build_etcd() {
	[[ -x $ETCD_DIR/etcd ]] && return 0
	local w=$CACHE/build/etcd-$ETCD_VERSION
	mkdir -p "$w" "$ETCD_DIR"
	if [[ ! -f $w/go.mod ]]; then
		log "preparing wrapper module for etcd $ETCD_VERSION"
		cat >"$w/go.mod.tmp" <<MOD
module sandpit.local/etcdwrap

go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
		mv "$w/go.mod.tmp" "$w/go.mod"
		cat >"$w/tools.go" <<'GO'
//go:build tools

// Package etcdwrap only pins the etcd server the sandpit test cluster builds.
package etcdwrap

import _ "go.etcd.io/etcd/server/v3"
GO
		(cd "$w" && go mod tidy >&2)
	fi
	log "building etcd $ETCD_VERSION"
	(cd "$w" && go build -trimpath -ldflags=-s -o "$ETCD_DIR/etcd.tmp" go.etcd.io/etcd/server/v3)
	mv "$ETCD_DIR/etcd.tmp" "$ETCD_DIR/etcd"
}

build_etcd
kube=(kube-apiserver)
command -v kubectl >/dev/null || kube+=(kubectl)
build_kube "${kube[@]}"
echo "ETCD_BIN=$ETCD_DIR/etcd"
echo "KUBE_APISERVER_BIN=$KUBE_DIR/kube-apiserver"
if command -v kubectl >/dev/null; then echo "KUBECTL_BIN=$(command -v kubectl)"; else echo "KUBECTL_BIN=$KUBE_DIR/kubectl"; fi
