#!/usr/bin/env bash
# Starts a test cluster on this machine, all on loopback: etcd and a real
# kube-apiserver (built from their Go modules and cached, see build-bins.sh),
# the CRDs of deploy/kubernetes, an OCI registry (test/cluster/registry), then
# `sandpit serve --role api` replicas and two `sandpit serve --role node` processes standing in for the Deployment's and
# the DaemonSet's pods (separate data dirs, uid ranges, egress pools, cgroups
# and ports; cgroups apart by data dir). Prints the export lines that point the E2B SDKs and kubectl
# at it; they are also in DIR/env.
#
# Usage: test/cluster/up.sh DIR      (DIR must not exist, or be empty)
# Env:   SANDPIT_BIN (default bin/sandpit), SANDPIT_REGISTRY_BIN (default:
#        built into DIR/bin), CLUSTER_NODES (default 2),
#        CLUSTER_APIS (API replicas, default 2; the second's URL is
#        SANDPIT_API2_URL),
#        CLUSTER_CONTROL_PLANE_ONLY=1 (etcd, kube-apiserver and the CRDs only)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

dir=${1:?usage: up.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [[ -n $(ls -A "$dir") ]]; then
	echo "up.sh: $dir is not empty (down.sh $dir first)" >&2
	exit 2
fi
mkdir -p "$dir/pids" "$dir/logs" "$dir/pki"
nodes=${CLUSTER_NODES:-2}
apis=${CLUSTER_APIS:-2}
sandpit=${SANDPIT_BIN:-$repo/bin/sandpit}

fail() {
	echo "up.sh: $*" >&2
	for f in "$dir"/logs/*.log; do
		[[ -f $f ]] || continue
		echo "----- $f (last 30 lines)" >&2
		tail -n 30 "$f" >&2
	done
	"$here/down.sh" "$dir" --keep-dir || true
	exit 1
}

eval "$("$here/build-bins.sh")"

# free_port: a port on loopback nobody listens on now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() { start_in "$dir" "$@"; }

# wait_http NAME URL [CURL ARGS...]: until URL answers 2xx, or 120 s.
wait_http() {
	local name=$1 url=$2
	shift 2
	for _ in $(seq 1 1200); do
		curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null && return 0
		kill -0 "$(<"$dir/pids/$name.pid")" 2>/dev/null || fail "$name exited"
		sleep 0.1
	done
	fail "$name did not answer $url in 120 s"
}

# etcd, on loopback only.
etcd_port=$(free_port)
peer_port=$(free_port)
start etcd "$ETCD_BIN" --name default --data-dir "$dir/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
	--initial-cluster "default=http://127.0.0.1:$peer_port" --log-level warn
wait_http etcd "http://127.0.0.1:$etcd_port/health"
echo "http://127.0.0.1:$etcd_port" >"$dir/etcd-url"

# kube-apiserver: a static admin token, service-account keys, a self-signed
# serving certificate in DIR/pki, RBAC on (so the manifests' roles mean
# something) and privileged pods allowed (the node DaemonSet is one).
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,sandpit-admin,sandpit-admin,system:masters" >"$dir/pki/tokens.csv"
openssl genrsa -out "$dir/pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>/dev/null
api_port=$(free_port)
start kube-apiserver "$KUBE_APISERVER_BIN" \
	--etcd-servers "http://127.0.0.1:$etcd_port" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
	--cert-dir "$dir/pki" --token-auth-file "$dir/pki/tokens.csv" \
	--service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/pki/sa.pub" \
	--service-account-signing-key-file "$dir/pki/sa.key" \
	--service-cluster-ip-range 10.96.0.0/24 --authorization-mode RBAC \
	--endpoint-reconciler-type none --allow-privileged=true --enable-priority-and-fairness=false --profiling=false
wait_http kube-apiserver "https://127.0.0.1:$api_port/readyz" -k -H "Authorization: Bearer $token"

kubeconfig=$dir/kubeconfig
cat >"$kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: sandpit-test
  cluster:
    server: https://127.0.0.1:$api_port
    insecure-skip-tls-verify: true
users:
- name: sandpit-admin
  user:
    token: $token
contexts:
- name: sandpit-test
  context: {cluster: sandpit-test, user: sandpit-admin, namespace: sandpit}
current-context: sandpit-test
KC
chmod 600 "$kubeconfig"
export KUBECONFIG=$kubeconfig
kc() { "$KUBECTL_BIN" --kubeconfig "$kubeconfig" "$@"; }
kc apply -f "$repo/deploy/kubernetes/00-namespace.yaml" -f "$repo/deploy/kubernetes/10-crd-sandboxes.yaml" \
	-f "$repo/deploy/kubernetes/11-crd-sandboxnodes.yaml" -f "$repo/deploy/kubernetes/12-crd-templates.yaml" \
	-f "$repo/deploy/kubernetes/13-crd-keys.yaml" \
	>"$dir/logs/apply.log" 2>&1 || fail "applying the CRDs: $(cat "$dir/logs/apply.log")"
kc wait --for condition=established --timeout 60s crd/sandboxes.sandpit.dev crd/sandboxnodes.sandpit.dev \
	crd/sandboxtemplates.sandpit.dev crd/teams.sandpit.dev crd/apikeys.sandpit.dev >>"$dir/logs/apply.log" 2>&1 || fail "CRDs not established"

{
	echo "export KUBECONFIG=$kubeconfig"
	echo "export SANDPIT_CLUSTER_DIR=$dir"
	# A kubectl build-bins.sh built is not on PATH yet.
	command -v kubectl >/dev/null || echo "export PATH=$(dirname "$KUBECTL_BIN"):\$PATH"
} >"$dir/env"

if [[ ${CLUSTER_CONTROL_PLANE_ONLY:-} == 1 ]]; then
	cat "$dir/env"
	exit 0
fi

[[ -x $sandpit ]] || fail "$sandpit is missing: make build"

# The cluster's OCI registry (test/cluster/registry: go-containerregistry's
# server, blobs in DIR/registry) on a free loopback port: nodes push the
# templates they build there and pull those built elsewhere (--registry).
registry_bin=${SANDPIT_REGISTRY_BIN:-$dir/bin/registry}
if [[ ! -x $registry_bin ]]; then
	(cd "$repo" && CGO_ENABLED=0 go build -o "$registry_bin" ./test/cluster/registry) >"$dir/logs/registry-build.log" 2>&1 ||
		fail "building the registry: $(cat "$dir/logs/registry-build.log")"
fi
start registry "$registry_bin" -listen 127.0.0.1:0 -dir "$dir/registry" -addr-file "$dir/registry.addr"
for _ in $(seq 1 300); do
	[[ -s $dir/registry.addr ]] && break
	kill -0 "$(<"$dir/pids/registry.pid")" 2>/dev/null || fail "registry exited"
	sleep 0.1
done
[[ -s $dir/registry.addr ]] || fail "registry did not start in 30 s"
registry_url=http://$(<"$dir/registry.addr")/sandpit/templates
wait_http registry "http://$(<"$dir/registry.addr")/v2/"
api_key=e2b_$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077 && echo "$api_key" >"$dir/api-key")
# Clusters of different DIRs may run at once on this machine (several
# engineers, several tests): each takes uid ranges and egress pools of its
# own, chosen by a hash of DIR (16 slots; up to 29 nodes each).
slot=$(($(cksum <<<"$dir" | cut -d' ' -f1) % 16))
for i in $(seq 1 "$nodes"); do
	port=$(free_port)
	mkdir -p "$dir/node-$i"
	# What the DaemonSet's pod runs, less the pod: its own data dir, a uid
	# range and egress pool of its own (two nodes share this one kernel; cgroups
	# are apart already, named after the data dir),
	# sandboxes killed on stop so down.sh leaves nothing behind, and a
	# short Lease so tests see a dead node soon (5 s: renewed every 1.7 s,
	# so a loaded machine may stall a node 3 s without killing it).
	node_cmd=("$sandpit" serve --role node \
		--kubeconfig "$kubeconfig" --namespace sandpit --node-name "node-$i" --advertise "127.0.0.1:$port" \
		--listen "127.0.0.1:$port" --data-dir "$dir/node-$i" --kill-on-stop \
		--uid-base $((300000000 + slot * 150000000 + i * 5000000)) --max-sandboxes 64 \
		--egress-pool "10.$((100 + slot)).$((i * 4)).0/22" \
		--warm-pool base=1 --min-free-memory 0 --lease-duration 5s \
		--registry "$registry_url")
	# restart-node.sh starts it again from here.
	declare -p node_cmd >"$dir/node-$i.cmd"
	SANDPIT_API_KEY=$api_key start "node-$i" "${node_cmd[@]}"
	echo "127.0.0.1:$port" >"$dir/node-$i.addr"
done
for i in $(seq 1 "$nodes"); do
	wait_http "node-$i" "http://$(<"$dir/node-$i.addr")/health"
done
for i in $(seq 1 "$apis"); do
	port=$(free_port)
	SANDPIT_API_KEY=$api_key start "api-$i" "$sandpit" serve --role api \
		--kubeconfig "$kubeconfig" --namespace sandpit --listen "127.0.0.1:$port"
	wait_http "api-$i" "http://127.0.0.1:$port/health"
	if ((i == 1)); then
		{
			echo "export E2B_API_URL=http://127.0.0.1:$port"
			echo "export E2B_SANDBOX_URL=http://127.0.0.1:$port"
			echo "export E2B_API_KEY=$api_key"
		} >>"$dir/env"
	else
		echo "export SANDPIT_API${i}_URL=http://127.0.0.1:$port" >>"$dir/env"
	fi
done
cat "$dir/env"
