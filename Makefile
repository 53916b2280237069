# sandpit: the two commands that matter are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
export PATH := /usr/local/go/bin:$(PATH)

BIN        := bin/sandpit
LISTEN     ?= 127.0.0.1:49982
GO_TOOL    := go tool -modfile=tools/go.mod
GO_SOURCES := $(shell find . -name '*.go' -not -path './tools/*' -not -path '*/node_modules/*') go.mod go.sum
# The console's bundle is embedded in the binary: a rebuilt bundle rebuilds it.
GO_SOURCES += $(shell find internal/console/dist -type f)

# Packages with goroutines and locks enough to race: their tests also run
# under the race detector (it needs cgo, hence gcc from setup).
RACE_PKGS  := ./internal/agent/... ./internal/sandbox/... ./internal/proxy/... ./internal/interp/... ./internal/runtime/... ./internal/intercept/...
RACE_PKGS  += ./internal/netproxy/... ./internal/cluster/...

.PHONY: help setup setup-test build run test test-go test-race test-fuzz test-compat lint tidy-check generate console bench cluster-bins test-cluster

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install what sandpit needs (Debian/Ubuntu, as root; quick when done)
	@scripts/setup.sh

setup-test: ## setup, plus what the tests need (browser, peers, Docker's binaries)
	@scripts/setup.sh test

# All in one go build, so their modification times match: the daemon
# starts sandboxes from the sandpit-agent and sandpit-init beside it only
# when they do.
$(BIN): $(GO_SOURCES)
	CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/sandpit ./cmd/sandpit-agent ./cmd/sandpit-init

build: $(BIN) ## build the static binaries into bin/ (sandpit, and sandpit-agent and sandpit-init for inside sandboxes)

run: setup build ## install, build and start the daemon on $(LISTEN)
	$(BIN) serve --listen $(LISTEN)

test: setup-test build cluster-bins ## every test: Go unit + integration (real sandboxes), race detector, then the official SDK compat suite
	test/compat/run.sh --install # Go tests drive the pinned SDKs too
	go test -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory test-race test-fuzz tidy-check
	test/compat/run.sh
	test/compat-py/run.sh
	examples/python/run.sh
	test/cluster/run.sh
	$(MAKE) --no-print-directory image-check
	# A small scale simulation: node processes with --runtime fake register, and creates go through the api role.
	go run ./test/cluster/scalesim -nodes 4 -sandboxes 40 -concurrency 4 -settle 2s -min-created 0.9

test-go: build ## Go tests only
	go test -count=1 -timeout 20m ./...

test-race: ## the concurrent packages' tests under the race detector
	CGO_ENABLED=1 go test -race -count=1 -timeout 20m $(RACE_PKGS)

# Each parser of outside input, fuzzed for a number of inputs: about ten
# seconds each on the CI machine. A count, not a duration: with -fuzztime
# 10s, Go 1.26's fuzzing coordinator can report its own deadline as the
# target's failure ("context deadline exceeded", no failing input written;
# go.dev/issue/75804, fixed in Go 1.27). Minimizing is capped: without the
# cap a new input can stall a short run while it is shrunk.
FUZZ_TARGETS := \
	./internal/template/oci:FuzzUnpack:7000 \
	./internal/safepath:FuzzResolve:6000 \
	./internal/agent/files:FuzzUpload:75000 \
	./internal/agent/users:FuzzFromHeader:300000 \
	./internal/agent:FuzzTunnelTarget:90000 \
	./internal/restapi:FuzzCreateBody:20000 \
	./internal/restapi:FuzzParseMetadataFilter:40000 \
	./internal/sandbox:FuzzParseCursor:50000 \
	./internal/template:FuzzParseDockerfile:30000 \
	./internal/netproxy:FuzzPeekName:75000

test-fuzz: ## every fuzzer for its count of inputs (about 10 s each, for CI)
	for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; \
	  go test -run='^$$' -fuzz="^$${rest%%:*}$$" -fuzztime=$${rest#*:}x -fuzzminimizetime=50x "$$pkg"; \
	done

# The test cluster's kube-apiserver and etcd, built from their Go modules
# once per version and cached in /var/cache/sandpit (about 5 minutes).
cluster-bins: ## build (once) the test cluster's kube-apiserver and etcd
	test/cluster/build-bins.sh >/dev/null

test-cluster: build cluster-bins ## the official JS SDK against a test cluster on Kubernetes (api role, two nodes)
	test/cluster/run.sh

test-compat: build ## the official E2B SDKs (JS, then Python) against a real server
	test/compat/run.sh
	test/compat-py/run.sh

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	$(GO_TOOL) staticcheck ./...
	@$(MAKE) --no-print-directory tidy-check

tidy-check: ## fail when `go mod tidy` would change go.mod or go.sum
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy" >&2; exit 1; }

generate: ## regenerate gen/ from api/
	go generate ./gen/...

console: ## rebuild the console's bundle (web/ into internal/console/dist, committed)
	go generate ./internal/console

bench: build ## benchmarks against runc, crun, bwrap and runsc (see BENCHMARKS.md)
	bench/run.sh

# The container image (issue 13, deploy/kubernetes): a docker-archive tarball
# (docker/podman load, ctr images import, kind load image-archive) written
# without Docker or a registry by cmd/mkimage, on a Debian root built from
# Debian's packages by scripts/image-base.sh. The root and its gzipped layer
# are cached in /var/cache/sandpit/image, so only the first run is slow.
# Tagged sandpit:$(IMAGE_TAG) and sandpit:latest (what the manifests name).
IMAGE_SUITE ?= bookworm
IMAGE_TAG   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_OUT   ?= bin/sandpit-image.tar

.PHONY: image image-check
image: build ## the container image as a docker-archive tarball (bin/sandpit-image.tar), without Docker
	root=$$(scripts/image-base.sh $(IMAGE_SUITE)); \
	go run ./cmd/mkimage -base "$$root" -base-cache "$$root.layer.tar.gz" -epoch $(IMAGE_EPOCH) \
	  -tag sandpit:$(IMAGE_TAG) -tag sandpit:latest -o $(IMAGE_OUT) \
	  -add bin/sandpit:/usr/local/bin/sandpit -add bin/sandpit-agent:/usr/local/bin/sandpit-agent -add bin/sandpit-init:/usr/local/bin/sandpit-init

image-check: image ## make image, then read it back (go-containerregistry) and check the binaries and entrypoint are in it
	go run ./cmd/mkimage -check $(IMAGE_OUT)
