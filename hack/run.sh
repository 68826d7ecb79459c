#!/usr/bin/env bash
# `make run`: run the Kyklos operator with the examples applied.
#  - KUBECONFIG set (or ~/.kube/config present) and reachable: use that cluster.
#  - otherwise: start a local sandbox (real etcd, kube-apiserver, controller-manager and
#    scheduler built from the official Go modules, plus Kyklos's node agent) and use it.
# Ctrl-C stops the operator and the sandbox it started.
#  - KYKLOS_NODE=real (make run NODE=real; root): the sandbox runs a real node (kubelet,
#    containerd, runc) and the walkthrough runs in real containers: the image built by
#    `kyklos image build --load`, the chart installed with helm, the examples applied.
set -euo pipefail
cd "$(dirname "$0")/.."

SANDBOX_PID=""
OPERATOR_PID=""
cleanup() {
  [ -n "$OPERATOR_PID" ] && kill "$OPERATOR_PID" 2>/dev/null && wait "$OPERATOR_PID" 2>/dev/null || true
  [ -n "$SANDBOX_PID" ] && kill "$SANDBOX_PID" 2>/dev/null && wait "$SANDBOX_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

current_kubeconfig="${KUBECONFIG:-}"
if [ -z "$current_kubeconfig" ] && [ -f "$HOME/.kube/config" ]; then
  current_kubeconfig="$HOME/.kube/config"
fi

NODE="${KYKLOS_NODE:-agent}"
if [ "$NODE" = real ]; then current_kubeconfig=""; fi
if [ -n "$current_kubeconfig" ] && kubectl --kubeconfig "$current_kubeconfig" version --request-timeout=5s >/dev/null 2>&1; then
  KCFG="$current_kubeconfig"
  TARGET=cluster
  echo "kyklos: using the cluster of $KCFG"
else
  TARGET=sandbox
  KCFG="$PWD/sandbox.kubeconfig"
  mkdir -p .sandbox
  echo "kyklos: no reachable kubeconfig; starting a local sandbox (the first start builds Kubernetes from source, see README)"
  kyklos sandbox build
  kyklos sandbox serve --node "$NODE" --kubeconfig "$KCFG" --data-dir "$PWD/.sandbox/data" > .sandbox/serve.out 2> .sandbox/serve.log &
  SANDBOX_PID=$!
  for _ in $(seq 1 600); do
    grep -q '^kubeconfig: ' .sandbox/serve.out 2>/dev/null && break
    if ! kill -0 "$SANDBOX_PID" 2>/dev/null; then
      echo "kyklos: the sandbox did not start:" >&2; tail -n 20 .sandbox/serve.log >&2; exit 1
    fi
    sleep 0.5
  done
  grep -q '^kubeconfig: ' .sandbox/serve.out || { echo "kyklos: sandbox start timed out" >&2; tail -n 20 .sandbox/serve.log >&2; exit 1; }
  echo "kyklos: sandbox ready; kubeconfig: $KCFG"
fi
export KUBECONFIG="$KCFG"

if [ "$NODE" = real ]; then
  # The walkthrough in real containers: the image into the node's containerd, the chart
  # (operator as a pod with its ServiceAccount), the example data on a claim, the examples.
  image=$(kyklos image build --load | tail -n 1)
  helm=$(python tests/helm_tool.py)
  "$helm" upgrade --install kyklos charts/kyklos --namespace kyklos-system --create-namespace \
    --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
    --set image.pullPolicy=Never --set logging.format=text --wait --timeout 300s
  KYKLOS_IMAGE="$image" bash hack/load-example-data.sh cluster
  kubectl create --save-config -f examples/ 2>&1 | grep -v AlreadyExists || true
  echo "kyklos: the chart runs the operator on the real node; examples applied. In another terminal:"
  echo "  export KUBECONFIG=$KCFG; kubectl get ml; kubectl get pods -A"
  echo "Ctrl-C stops everything. The operator's log follows."
  kubectl logs -n kyklos-system -f deployment/kyklos &
  OPERATOR_PID=$!
  wait "$SANDBOX_PID"
  exit 0
fi

kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
echo "kyklos: CRDs installed"

bash hack/load-example-data.sh "$TARGET"

kyklos run --kubeconfig "$KCFG" --all-namespaces --standalone \
  --metrics-port "${KYKLOS_METRICS_PORT:-8080}" \
  --liveness "http://127.0.0.1:${KYKLOS_HEALTH_PORT:-8081}/healthz" > .operator.log 2>&1 &
OPERATOR_PID=$!
echo "kyklos: operator running (log: .operator.log, metrics: http://127.0.0.1:${KYKLOS_METRICS_PORT:-8080}/metrics)"

# Create the examples; keep the ones that already exist (a sandbox restarted on .sandbox/data,
# or a cluster that ran them before). Re-applying them is not safe: once the DriftMonitor has
# promoted a retrained model, churn-model's spec.model is a `uri` the operator wrote, and
# `kubectl apply` would add the manifest's `fromTrainingJob` beside it, which the API server
# rejects ("set exactly one of uri and fromTrainingJob").
if ! created=$(kubectl create --save-config -f examples/ 2>&1); then
  if printf '%s\n' "$created" | grep -v 'AlreadyExists' | grep -q '^Error'; then
    printf '%s\n' "$created" >&2; exit 1
  fi
fi
printf '%s\n' "$created" | grep -v 'AlreadyExists' || true
if printf '%s\n' "$created" | grep -q 'AlreadyExists'; then
  echo "kyklos: examples that already exist are kept as they are (to start over: kubectl delete -f examples/ while make run runs, or rm -rf .sandbox for a fresh sandbox)"
fi
echo
echo "kyklos: examples applied. In another terminal:"
echo "  export KUBECONFIG=$KCFG"
echo "  kubectl get ml            # all Kyklos resources"
echo "  kubectl wait --for=condition=Ready dataset/churn-reference --timeout=300s"
echo "  kubectl get tj            # after the drift retrain: its champion/challenger Verdict"
echo "  kubectl describe tj churn-drift-retrain-1   # Status > Evaluation: both models' metrics and the delta"
echo "  # live traffic for the canary analysis (bounded; goes through the serving proxies):"
echo "  kyklos traffic churn-model --data examples/data/churn-reference.csv --rps 20 --duration 5m"
echo "  kyklos rollout status churn-model     # or: kubectl kyklos rollout status churn-model"
echo "Ctrl-C stops everything."
for _ in $(seq 1 60); do
  sleep 2
  kill -0 "$OPERATOR_PID" 2>/dev/null || { echo "kyklos: the operator exited:" >&2; tail -n 20 .operator.log >&2; exit 1; }
  if kubectl get datasets -o jsonpath='{.items[*].status.phase}' 2>/dev/null | grep -qE 'Ready|Failed'; then break; fi
done
kubectl get ml
status=0
wait "$OPERATOR_PID" || status=$?
OPERATOR_PID=""
echo "kyklos: the operator exited (status $status); the end of .operator.log:" >&2
tail -n 20 .operator.log >&2
exit "$status"
