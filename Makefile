# Every target sets itself up from nothing: the virtualenv is (re)built when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv run test test-fast test-k8s k8s-down lint bench images chart faults sim clean

SCHEDULES ?= 3
SEEDS     ?= 10000
# History sizes (transfers applied) `make bench` measures memory, disk, throughput, restart and catch-up at.
HISTORY   ?= 10000,1000000,10000000

# The node's native signature module (Rust, built by maturin; cargo's output cached outside the tree).
SIGS := native/sigs
export PATH := $(HOME)/.cargo/bin:$(PATH)
export CARGO_TARGET_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/walletcluster/cargo

$(STAMP): pyproject.toml $(SIGS)/Cargo.toml $(SIGS)/Cargo.lock $(SIGS)/pyproject.toml $(SIGS)/src/lib.rs
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	hack/rust
	$(BIN)/pip install -q "$$(grep -o '^maturin==[^ ]*' requirements/build.lock)"
	PATH=$(CURDIR)/$(BIN):$$PATH MATURIN_PEP517_ARGS=--locked $(BIN)/pip install -q --no-build-isolation ./$(SIGS)
	$(BIN)/pip install -q -e '.[node,operator,dev]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m walletnode.devcluster

test: $(STAMP)
	hack/host-deps
	hack/s3/build >/dev/null
	$(BIN)/ruff check node operator tests bench
	$(BIN)/mypy node/walletnode operator/walletoperator
	$(BIN)/pytest tests --benchmark-disable
	$(MAKE) e2e-kind

bench: $(STAMP)
	hack/host-deps
	$(BIN)/pytest tests/bench --benchmark-only --benchmark-json=bench/hot-paths.json
	$(BIN)/python -m bench.run --update-doc docs/benchmarks.md
	$(BIN)/python -m bench.history --transfers $(HISTORY) --update-doc docs/benchmarks.md
	$(BIN)/python -m bench.backup --out bench/backup.json

test-k8s: $(STAMP)
	hack/k8s/up --with-node
	$(BIN)/pytest tests/k8s -m k8s

k8s-down:
	hack/k8s/down

# The e2e tests against a kind cluster, as the GitHub workflow runs them: creates the kind cluster
# $(KIND_CLUSTER) if absent (hack/kind/up: kind itself, adapted to this machine only where needed), checks
# that its node is Ready (kind exits 0 when its own wait times out), builds the images, loads them into the
# node, runs tests/e2e with the cluster's kubeconfig and deletes the cluster (kept when a step fails, for a
# look; `make kind-down` deletes it). KIND_NODE_IMAGE picks the node image, with kind, kubectl and helm
# from PATH (the GitHub workflow: kind's official image); empty, hack/kind/node-image builds it offline
# with the Kubernetes of hack/k8s, and kind, kubectl and helm with it (.run/kind-bin).
KIND            ?= kind
KIND_CLUSTER    ?= walletcluster
KIND_NODE_IMAGE ?=
KIND_KUBECONFIG := .run/kind-$(KIND_CLUSTER).kubeconfig
KIND_IMAGE_FILE := .run/kind-node-image

.PHONY: e2e-kind kind-down
e2e-kind: export PATH := $(if $(KIND_NODE_IMAGE),,$(CURDIR)/.run/kind-bin:)$(PATH)
e2e-kind: $(STAMP)
	mkdir -p .run
	$(if $(KIND_NODE_IMAGE),echo '$(KIND_NODE_IMAGE)',hack/kind/node-image) >$(KIND_IMAGE_FILE)
	@for tool in $(KIND) kubectl helm; do \
	  command -v $$tool >/dev/null || { echo "make e2e-kind needs $$tool on PATH" >&2; exit 1; }; done
	$(KIND) get clusters | grep -qx '$(KIND_CLUSTER)' || KIND=$(KIND) hack/kind/up $(KIND_CLUSTER) "$$(cat $(KIND_IMAGE_FILE))"
	umask 077 && $(KIND) get kubeconfig --name $(KIND_CLUSTER) >$(KIND_KUBECONFIG)
	kubectl --kubeconfig $(KIND_KUBECONFIG) wait --for=condition=Ready node --all --timeout=180s
	$(MAKE) images
	$(KIND) load docker-image walletcluster/node:dev walletcluster/operator:dev --name $(KIND_CLUSTER)
	WALLETCLUSTER_E2E_KUBECONFIG=$(CURDIR)/$(KIND_KUBECONFIG) $(BIN)/pytest tests/e2e
	KIND=$(KIND) hack/kind/down $(KIND_CLUSTER)

kind-down: export PATH := $(CURDIR)/.run/kind-bin:$(PATH)
kind-down:
	KIND=$(KIND) hack/kind/down $(KIND_CLUSTER)

test-fast: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check node operator tests
	$(BIN)/mypy node/walletnode operator/walletoperator

images:
	images/build

# Lints both Helm charts (strict) and packages them into dist/charts/. HELM=helm uses another helm;
# the default is the pinned one hack/k8s builds.
HELM   ?= hack/k8s/helm
CHARTS := charts/walletcluster-operator charts/walletcluster

chart:
	$(if $(filter hack/k8s/helm,$(HELM)),hack/k8s/build)
	$(HELM) lint --strict $(CHARTS)
	$(HELM) package $(CHARTS) --destination dist/charts

faults: $(STAMP)
	images/docker-up
	$(BIN)/python -m tests.faults.run --schedules $(SCHEDULES) $(if $(SEED),--seed $(SEED))

# The deterministic Raft simulator on SEEDS seeds from SEED (default: the current time); ends with
# one summary line, and prints the replay command of every failing seed.
sim: $(STAMP)
	$(BIN)/python -m tests.sim.run --seeds $(SEEDS) $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) .run
