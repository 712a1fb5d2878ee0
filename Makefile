# Every target sets itself up from nothing: the virtualenv is (re)built when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv run test test-fast test-k8s k8s-down lint bench images faults clean

SCHEDULES ?= 3

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
	$(BIN)/pytest tests/bench --benchmark-only --benchmark-json=bench/hot-paths.json
	$(BIN)/python bench/node_throughput.py --out bench/results.json

test-k8s: $(STAMP)
	hack/k8s/up --with-node
	$(BIN)/pytest tests/k8s -m k8s

k8s-down:
	hack/k8s/down

test-fast: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check node operator tests
	$(BIN)/mypy node/walletnode operator/walletoperator

images:
	images/build

faults: $(STAMP)
	images/docker-up
	$(BIN)/python -m tests.faults.run --schedules $(SCHEDULES) $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) .run
