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

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[node,operator,dev]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m walletnode.devcluster

test: $(STAMP)
	hack/host-deps
	$(BIN)/ruff check node operator tests bench
	$(BIN)/mypy node/walletnode operator/walletoperator
	$(BIN)/pytest tests --benchmark-disable

bench: $(STAMP)
	hack/host-deps
	$(BIN)/pytest tests/bench --benchmark-only --benchmark-json=bench/hot-paths.json
	$(BIN)/python -m bench.run --update-doc docs/benchmarks.md
	$(BIN)/python -m bench.history --transfers $(HISTORY) --update-doc docs/benchmarks.md

test-k8s: $(STAMP)
	hack/k8s/up --with-node
	$(BIN)/pytest tests/k8s -m k8s

k8s-down:
	hack/k8s/down

# The e2e tests against a kind cluster, as the GitHub workflow runs them (needs kind, kubectl and helm
# on PATH): creates the cluster $(KIND_CLUSTER) if absent (KIND_NODE_IMAGE picks its Kubernetes), builds
# the images, loads them into the cluster's nodes, and runs tests/e2e with the cluster's kubeconfig.
KIND            ?= kind
KIND_CLUSTER    ?= walletcluster
KIND_NODE_IMAGE ?=
KIND_KUBECONFIG := .run/kind-$(KIND_CLUSTER).kubeconfig

.PHONY: e2e-kind
e2e-kind: $(STAMP)
	@for tool in $(KIND) kubectl helm; do \
	  command -v $$tool >/dev/null || { echo "make e2e-kind needs $$tool on PATH" >&2; exit 1; }; done
	$(KIND) get clusters | grep -qx '$(KIND_CLUSTER)' || \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --wait 180s $(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE))
	$(MAKE) images
	$(KIND) load docker-image walletcluster/node:dev walletcluster/operator:dev --name $(KIND_CLUSTER)
	mkdir -p $(dir $(KIND_KUBECONFIG))
	umask 077 && $(KIND) get kubeconfig --name $(KIND_CLUSTER) >$(KIND_KUBECONFIG)
	WALLETCLUSTER_E2E_KUBECONFIG=$(CURDIR)/$(KIND_KUBECONFIG) $(BIN)/pytest tests/e2e

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
