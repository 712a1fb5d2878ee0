# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the scripts
# Shared settings and helpers for hack/k8s/{build,up,down,...}. Sourced, not executed.
# Everything a script writes lives under $HOME/.cache/walletcluster (never in the repository).

HACK_K8S_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HACK_GO_DIR=$(cd "$HACK_K8S_DIR/../go" && pwd)

# Prints the version of module $2 required by go.mod $1 (single-line or block require).
module_version() {
  awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}

# The Kubernetes release is pinned in one place: the require line of hack/go/kubernetes/go.mod.
K8S_VERSION=$(module_version "$HACK_GO_DIR/kubernetes/go.mod" k8s.io/kubernetes)
K8S_CACHE=${WALLETCLUSTER_CACHE:-$HOME/.cache/walletcluster}/k8s
BIN_DIR=$K8S_CACHE/$K8S_VERSION/bin
STATE_DIR=${WALLETCLUSTER_K8S_STATE:-${WALLETCLUSTER_CACHE:-$HOME/.cache/walletcluster}/k8s-state}

# Ports on 127.0.0.1. Chosen away from the ledger's 7701-7703/8701-8703 and from a default etcd.
API_PORT=${K8S_API_PORT:-6443}
ETCD_CLIENT_PORT=${K8S_ETCD_PORT:-12379}
ETCD_PEER_PORT=$((ETCD_CLIENT_PORT + 1))
KCM_PORT=${K8S_KCM_PORT:-10257}
SCHED_PORT=${K8S_SCHEDULER_PORT:-10259}

# The node of `up --with-node` (stage 2).
NODE_NAME=$(hostname | tr '[:upper:]' '[:lower:]')
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
DNS_IP=10.96.0.10

SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1 # first address of SERVICE_CIDR: the "kubernetes" Service
CLUSTER_DOMAIN=cluster.local

log() { printf '[k8s] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Root runs apt-get directly; anyone else needs sudo.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the Debian packages that are not installed yet (quick no-op when all are present).
ensure_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

PKI=$STATE_DIR/pki

pid_file() { echo "$STATE_DIR/run/$1.pid"; }

# Prints the pid of component $1 if it is running *our* binary; a stale pid file whose number was
# reused by an unrelated process therefore never makes us signal that process.
running_pid() {
  local f pid exe
  f=$(pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)} # the binary was rebuilt while it ran
  case "$exe" in
    "$K8S_CACHE"/*/bin/"$1" | "/usr/bin/$1") echo "$pid" ;;
    *) return 1 ;;
  esac
}

# True while process $1 runs. A zombie does not count: the daemons outlive the `up` that started
# them, so their parent is init, which may take a moment to reap them.
process_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

# stop_component NAME: SIGTERM to the process recorded for NAME, SIGKILL after 20 s.
stop_component() {
  local pid i
  if pid=$(running_pid "$1"); then
    log "stopping $1 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      process_alive "$pid" || break
      sleep 0.2
    done
    if process_alive "$pid"; then
      log "$1 did not stop in 20s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$(pid_file "$1")"
}

kubectl_admin() { "$BIN_DIR/kubectl" --kubeconfig "$STATE_DIR/admin.kubeconfig" "$@"; }

# new_cert NAME SUBJECT [SUBJECT_ALT_NAMES]: a key and a certificate signed by the cluster CA.
new_cert() {
  local name=$1 subject=$2 san=${3:-} ext
  [ -f "$PKI/$name.crt" ] && return 0
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subject" \
    -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

# write_kubeconfig NAME CERT: a kubeconfig for the client certificate CERT, certificates embedded.
write_kubeconfig() {
  local file=$STATE_DIR/$1.kubeconfig cert=$2
  local k=("$BIN_DIR/kubectl" --kubeconfig "$file.tmp")
  rm -f "$file.tmp"
  "${k[@]}" config set-cluster walletcluster --server "https://127.0.0.1:$API_PORT" \
    --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
  "${k[@]}" config set-credentials "$cert" --client-certificate "$PKI/$cert.crt" \
    --client-key "$PKI/$cert.key" --embed-certs >/dev/null
  "${k[@]}" config set-context walletcluster --cluster walletcluster --user "$cert" >/dev/null
  "${k[@]}" config use-context walletcluster >/dev/null
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

# start NAME [EXECUTABLE]: runs the binary (default: the one we built) with the arguments that
# function args_NAME prints, in its own session (so it outlives the calling script and a Ctrl-C
# of its caller), logging to $STATE_DIR/logs/NAME.log, and records its pid.
start() {
  local name=$1 exe=${2:-$BIN_DIR/$1} args
  running_pid "$name" >/dev/null && return 0
  args=$("args_${name//-/_}")
  mkdir -p "$STATE_DIR/logs" "$STATE_DIR/run"
  # The daemon must not inherit any descriptor of its caller beyond 0-2: it would hold the lock
  # of hack/k8s/up (or a caller's own flock, or the pipe a caller reads to its end) forever.
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-"
    done
    # shellcheck disable=SC2086  # args are generated above without spaces inside a value
    exec setsid "$exe" $args </dev/null >>"$STATE_DIR/logs/$name.log" 2>&1
  ) &
  echo $! >"$(pid_file "$name")"
}

show_log() {
  log "last lines of $STATE_DIR/logs/$1.log:"
  tail -n 25 "$STATE_DIR/logs/$1.log" >&2 || true
}

# wait_healthy NAME CHECK...: fails with the component's log when it exits or stays unhealthy.
wait_healthy() {
  local name=$1 start=$SECONDS
  shift
  until "$@" >/dev/null 2>&1; do
    if ! running_pid "$name" >/dev/null; then
      log "$name exited"
      show_log "$name"
      return 1
    fi
    if ((SECONDS - start >= 120)); then
      log "$name not healthy after 120s"
      show_log "$name"
      return 1
    fi
    sleep 0.5
  done
}
