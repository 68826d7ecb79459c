# Kyklos — two commands do all the set-up on a fresh machine:
#   make run    the operator against the current kubeconfig, or against a local sandbox it starts
#   make test   every check CI runs (lint, types, ring contracts, CRD drift, unit + sandbox tests)
# Each installs what it needs first (a virtualenv in .venv; the sandbox's Kubernetes build).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install sandbox-build lint unit test run crds clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the official
# Go modules (hack/controlplane) into ~/.cache/kyklos/controlplane/<version>/; instant when built.
sandbox-build: install
	$(BIN)/kyklos sandbox build

crds: install
	$(BIN)/kyklos crds

lint: install
	$(BIN)/ruff check operator tests benchmarks examples
	$(BIN)/ruff format --check operator tests benchmarks examples
	$(BIN)/mypy --strict operator/kyklos
	$(BIN)/lint-imports
	$(BIN)/kyklos crds --check

unit: install
	$(BIN)/pytest tests/unit -q

test: install sandbox-build lint
	$(BIN)/pytest -q

run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash hack/run.sh

clean:
	rm -rf $(VENV) .sandbox sandbox.kubeconfig .mypy_cache .ruff_cache .pytest_cache
