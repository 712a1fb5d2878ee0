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

KIND_RUNTIME=walletcluster-kind

# True when containers that ask for every capability (privileged ones; `docker exec --privileged`,
# which kind uses for everything) cannot start here without the runtime $KIND_RUNTIME.
needs_kind_runtime() { ! has_cap_sys_resource "$(dockerd_pid)"; }

# kind_command KIND: sets the array KIND_CMD to run KIND so that its containers start on this
# machine. Where needs_kind_runtime, that adds the dockerd runtime $KIND_RUNTIME (removed again by
# hack/kind/down or `docker-runtime remove`) and puts hack/kind/docker-run-with-runtime first on
# kind's PATH as `docker` (kind has no option to pick a runtime).
kind_command() {
  KIND_CMD=("$1")
  needs_kind_runtime || return 0
  log "dockerd's root lacks CAP_SYS_RESOURCE: kind's containers run under the runtime $KIND_RUNTIME"
  as_root env WALLETCLUSTER_CACHE="${WALLETCLUSTER_CACHE:-}" HOME="$HOME" \
    "$HACK_KIND_DIR/docker-runtime" add "$KIND_RUNTIME"
  mkdir -p "$KIND_CACHE/docker-shim"
  ln -sfn "$HACK_KIND_DIR/docker-run-with-runtime" "$KIND_CACHE/docker-shim/docker"
  KIND_CMD=(env "PATH=$KIND_CACHE/docker-shim:$PATH" "KIND_REAL_DOCKER=$(command -v docker)"
    "KIND_DOCKER_RUNTIME=$KIND_RUNTIME" "$1")
}

# Removes the runtime $KIND_RUNTIME from dockerd's configuration once no container uses it.
release_kind_runtime() {
  local in_use
  docker info -f '{{range $k, $v := .Runtimes}}{{$k}} {{end}}' | grep -qw "$KIND_RUNTIME" || return 0
  in_use=$(docker ps -aq | xargs -r docker inspect -f '{{.HostConfig.Runtime}}' | grep -cx "$KIND_RUNTIME" || true)
  ((in_use == 0)) || return 0
  as_root env WALLETCLUSTER_CACHE="${WALLETCLUSTER_CACHE:-}" HOME="$HOME" \
    "$HACK_KIND_DIR/docker-runtime" remove "$KIND_RUNTIME"
}
