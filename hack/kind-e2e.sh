#!/usr/bin/env bash
# End-to-end walkthrough on kind (needs Docker, kind and kubectl; helm comes from the dev
# extra's wheel on linux/amd64, else from $KYKLOS_HELM or PATH):
#   1. create the kind cluster of kind-config.yaml (reused when it exists),
#   2. build the Kyklos image and load it into the cluster's nodes,
#   3. install the chart (CRDs included) and wait for the operator,
#   4. copy examples/data into a claim and apply examples/ in a demo namespace,
#   5. wait until the examples are Ready and print their status.
# Environment:
#   KYKLOS_KIND_CLUSTER     cluster name (default: the name in kind-config.yaml, "kyklos")
#   KYKLOS_DEMO_NAMESPACE   namespace for the examples (default: kyklos-demo)
#   KYKLOS_IMAGE            image reference to build (default: ghcr.io/kyklos/kyklos:<appVersion>)
#   KYKLOS_WAIT_TIMEOUT     seconds to wait for each stage (default: 600)
#   KYKLOS_KIND_DELETE=1    delete the cluster at the end (also on failure)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'kind-e2e: %s\n' "$*"; }
die() { printf 'kind-e2e: error: %s\n' "$*" >&2; exit 1; }

CLUSTER="${KYKLOS_KIND_CLUSTER:-$(awk '/^name:/ {print $2; exit}' kind-config.yaml)}"
CLUSTER="${CLUSTER:-kyklos}"
DEMO_NS="${KYKLOS_DEMO_NAMESPACE:-kyklos-demo}"
RELEASE_NS="kyklos-system"
TIMEOUT="${KYKLOS_WAIT_TIMEOUT:-600}"
APP_VERSION="$(awk -F'"' '/^appVersion:/ {print $2; exit}' charts/kyklos/Chart.yaml)"
IMAGE="${KYKLOS_IMAGE:-ghcr.io/kyklos/kyklos:${APP_VERSION}}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || die "$tool is not installed (see docs/install.md)"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"
if [ -n "${KYKLOS_HELM:-}" ]; then
  HELM="$KYKLOS_HELM"
elif HELM="$("$PYTHON" tests/helm_tool.py 2>/dev/null)"; then
  :
elif command -v helm >/dev/null; then
  HELM="$(command -v helm)"
else
  die "no helm: install the dev extra (pip install -e '.[dev]') or put helm on PATH"
fi

KUBECONFIG_FILE="$(mktemp -t kyklos-kind-kubeconfig.XXXXXX)"
export KUBECONFIG="$KUBECONFIG_FILE"

diagnose() {
  say "--- diagnostics ---"
  kubectl get ml -n "$DEMO_NS" -o wide 2>/dev/null || true
  kubectl get jobs,pods,deployments,pvc -n "$DEMO_NS" -o wide 2>/dev/null || true
  kubectl get events -n "$DEMO_NS" --sort-by=.lastTimestamp 2>/dev/null | tail -n 30 || true
  kubectl logs -n "$RELEASE_NS" deployment/kyklos --tail=60 2>/dev/null || true
}
finish() {
  code=$?
  [ "$code" -ne 0 ] && diagnose
  if [ "${KYKLOS_KIND_DELETE:-0}" = "1" ]; then
    say "deleting cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -f "$KUBECONFIG_FILE"
  exit "$code"
}
trap finish EXIT

# 1. Cluster.
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  say "reusing kind cluster $CLUSTER"
else
  say "creating kind cluster $CLUSTER (kind-config.yaml: one control plane, one worker)"
  kind create cluster --name "$CLUSTER" --config kind-config.yaml --wait 120s
fi
kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null

# 2. Image: built locally, loaded into every node (no registry involved).
say "building $IMAGE"
docker build --tag "$IMAGE" .
say "loading $IMAGE into the nodes of $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# 3. Chart. pullPolicy Never: the image exists only in the nodes' containerd.
say "installing the chart into $RELEASE_NS"
"$HELM" upgrade --install kyklos charts/kyklos \
  --namespace "$RELEASE_NS" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never \
  --set logging.format=text \
  --wait --timeout "${TIMEOUT}s"
kubectl rollout status -n "$RELEASE_NS" deployment/kyklos --timeout="${TIMEOUT}s"

# 4. Example data: the claim kyklos-examples holding examples/data at its root, filled
# through a short-lived pod of the Kyklos image (the same loader `make run` uses).
kubectl create namespace "$DEMO_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
KYKLOS_EXAMPLES_NAMESPACE="$DEMO_NS" KYKLOS_IMAGE="$IMAGE" bash hack/load-example-data.sh cluster

# 5. Examples, then wait for them: the data profiled, the first model trained, the first
# drift check run, and the model served (Ready again after any canary the check's
# retraining started: a canary in progress reports Ready=False until it is promoted).
kubectl apply -n "$DEMO_NS" -f examples/
say "waiting for the Datasets and the TrainingJob to be Ready"
kubectl wait -n "$DEMO_NS" --for=condition=Ready --timeout="${TIMEOUT}s" \
  -f examples/dataset.yaml -f examples/trainingjob.yaml
say "waiting for the first drift check"
deadline=$((SECONDS + TIMEOUT))
while :; do
  checks="$(kubectl get driftmonitors -n "$DEMO_NS" \
    -o jsonpath='{range .items[*]}{.metadata.name}={.status.lastCheckTime}{"\n"}{end}')"
  if [ -n "$checks" ] && ! grep -q '=$' <<<"$checks"; then
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || die "no drift check within ${TIMEOUT}s: ${checks//$'\n'/ }"
  sleep 5
done
say "waiting for the ModelDeployment to be Ready"
kubectl wait -n "$DEMO_NS" --for=condition=Ready --timeout="${TIMEOUT}s" -f examples/modeldeployment.yaml

say "--- status ---"
kubectl get ml -n "$DEMO_NS" -o wide
say "done: Kyklos runs on kind cluster $CLUSTER (kubectl: kind export kubeconfig --name $CLUSTER)"
