# sandpit's image, for those with Docker or another builder of Dockerfiles:
#   docker build -t sandpit:dev .
# `make image` writes the equivalent image without any of them (cmd/mkimage:
# the same packages on a Debian 12 root made by debootstrap, the same binaries,
# entrypoint and command); the differences are in README.md ("Run on
# Kubernetes"). One image serves both roles: --role node (the DaemonSet,
# privileged) and --role api (the Deployment).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# All in one go build, so their modification times match: the daemon
# starts sandboxes from the sandpit-agent and sandpit-init beside it only
# when they do.
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/sandpit ./cmd/sandpit-agent ./cmd/sandpit-init

FROM debian:12-slim
# What a node execs or hands its sandboxes, which see the node's /usr as
# their userland: the list of scripts/image-base.sh (a test keeps the two
# equal).
RUN apt-get update && apt-get install -y --no-install-recommends \
# packages: begin
  ca-certificates git sudo procps iproute2 e2fsprogs debootstrap \
  python3 python3-ipykernel python3-matplotlib python3-pandas python3-numpy \
  python3-pil python3-pip \
  nodejs npm node-typescript r-cran-irkernel \
# packages: end
  && rm -rf /var/lib/apt/lists/*
# The Python kernel's packages beyond Debian's, as scripts/setup.sh installs
# them on a host.
COPY scripts/python-kernel-requirements.txt /usr/local/lib/sandpit/python/.requirements.txt
RUN python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --require-hashes --only-binary=:all: --target /usr/local/lib/sandpit/python \
    -r /usr/local/lib/sandpit/python/.requirements.txt
COPY --from=build /out/sandpit /out/sandpit-agent /out/sandpit-init /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/sandpit"]
CMD ["serve"]
