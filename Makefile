# Kyklos — two commands do all the set-up on a fresh machine:
#   make run    the operator against the current kubeconfig, or against a local sandbox it starts
#   make test   every check CI runs (lint, types, ring contracts, CRD drift, unit + sandbox tests)
# Each installs what it needs first (a virtualenv in .venv; the sandbox's Kubernetes build).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install sandbox-build lint unit test run crds clean node-deps node-build image e2e-prep \
	conformance-real

# The real node (`kyklos sandbox serve --node real`, tests/e2e): Debian packages it needs.
NODE ?= agent
NODE_PACKAGES := runc containernetworking-plugins iptables conntrack iproute2 gcc libc6-dev \
	buildah debootstrap

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

# e2e-prep first: where it runs it builds the control plane itself, alongside the image.
test: install e2e-prep sandbox-build lint
	$(BIN)/pytest -q
	@$(MAKE) --no-print-directory conformance-real

run: install
	@if [ "$(NODE)" = real ]; then $(MAKE) --no-print-directory node-build node-deps; fi
	PATH="$(CURDIR)/$(BIN):$$PATH" KYKLOS_NODE=$(NODE) bash hack/run.sh

# Installs the real node's Debian packages when some are missing and we are root; otherwise
# names them and exits 2.
node-deps:
	@missing=""; for p in $(NODE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "the real node needs the Debian packages$$missing (run as root: apt-get install -y$$missing)" >&2; exit 2; fi; \
	echo "installing$$missing"; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing

# kubelet, kube-proxy, containerd, CoreDNS and pause (hack/node) into ~/.cache/kyklos/node/.
node-build: install node-deps sandbox-build
	$(BIN)/kyklos sandbox build --node real

# The Kyklos image with buildah (Debian base by debootstrap); `kyklos image build --load`
# also puts it into a running real node.
image: install node-deps
	$(BIN)/kyklos image build

# tests/e2e needs root and overlayfs; elsewhere the e2e tests skip with that reason.
# The image build (debootstrap, pip: mostly network and disk) runs while Go compiles the
# control plane and the node (CPU), so a cold run waits for the longer of the two, not the sum.
e2e-prep: install
	@if [ "$$(id -u)" = 0 ] && grep -qw overlay /proc/filesystems; then \
		$(MAKE) --no-print-directory node-deps && \
		$(MAKE) --no-print-directory -j2 node-build image; \
	else echo "e2e: skipped (needs root and overlayfs)"; fi

# The fidelity check: the tests/sandbox conformance suite once more, on the real node (~2 min;
# node-agent-only tests skip with their reason). Where e2e-prep runs; skipped elsewhere.
conformance-real: install
	@if [ "$$(id -u)" = 0 ] && grep -qw overlay /proc/filesystems; then \
		KYKLOS_TEST_NODE=real $(BIN)/pytest tests/sandbox -q; \
	else echo "conformance on the real node: skipped (needs root and overlayfs)"; fi

clean:
	rm -rf $(VENV) .sandbox sandbox.kubeconfig .mypy_cache .ruff_cache .pytest_cache
