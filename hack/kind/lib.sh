# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the scripts
# Shared settings of hack/kind/{base-image,node-image,up,down}. Sourced, not executed.
# Builds on hack/k8s/lib.sh: the same Kubernetes release, binaries and cache.

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../k8s/lib.sh"
HACK_KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

KIND_VERSION=$(module_version "$HACK_GO_DIR/kind/go.mod" sigs.k8s.io/kind)
KIND_CACHE=${WALLETCLUSTER_CACHE:-$HOME/.cache/walletcluster}/kind
KIND_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

log() { printf '[kind] %s\n' "$*" >&2; }

# kind's images/base/files (static files of its base image: systemd units, containerd config, the
# entrypoint) ship inside the kind module; `go mod download` fetches it (verified against go.sum).
kind_module_dir() {
  (cd "$HACK_GO_DIR/kind" && GOFLAGS=-mod=readonly go mod download -json sigs.k8s.io/kind) |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# Capability 24 (CAP_SYS_RESOURCE) in the bounding set of process $1. Some VMs withhold it from root;
# then no privileged container can start (runc: "unable to apply caps"), and no process can lower
# its OOM score.
has_cap_sys_resource() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' "/proc/$1/status")
  (((0x$bnd >> 24) & 1))
}

# The pid of the running dockerd (the daemon whose runtimes hack/kind/up may extend).
dockerd_pid() {
  local pid
  pid=$(docker info -f '{{.ID}}' >/dev/null 2>&1 && pgrep -xo dockerd) || die "no dockerd is running"
  echo "$pid"
}
