#!/usr/bin/env bash
# Put examples/data/* at the root of a PersistentVolumeClaim "kyklos-examples" in the
# examples' namespace (the Dataset examples read pvc://kyklos-examples/<file>).
#   hack/load-example-data.sh sandbox   copy into the claim's local directory (the sandbox's
#                                       node agent binds claims to directories it owns)
#   hack/load-example-data.sh cluster   copy through a short-lived pod of the Kyklos image
# Env: KYKLOS_EXAMPLES_NAMESPACE (default: default), KYKLOS_IMAGE (cluster mode image).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-sandbox}"
ns="${KYKLOS_EXAMPLES_NAMESPACE:-default}"
image="${KYKLOS_IMAGE:-ghcr.io/kyklos/kyklos:0.1.0}"

kubectl apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: kyklos-examples
  labels: {app.kubernetes.io/part-of: churn-example}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
EOF

if [ "$target" = sandbox ]; then
  phase="" pv=""
  for _ in $(seq 1 60); do
    pv=$(kubectl get pvc -n "$ns" kyklos-examples -o jsonpath='{.spec.volumeName}' 2>/dev/null || true)
    phase=$(kubectl get pvc -n "$ns" kyklos-examples -o jsonpath='{.status.phase}' 2>/dev/null || true)
    [ -n "$pv" ] && [ "$phase" = Bound ] && break
    sleep 0.5
  done
  [ "$phase" = Bound ] || { echo "kyklos: claim $ns/kyklos-examples did not become Bound" >&2; exit 1; }
  dir=$(kubectl get pv "$pv" -o jsonpath='{.spec.hostPath.path}{.spec.local.path}')
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    echo "kyklos: volume $pv has no local directory ('$dir')" >&2; exit 1
  fi
  cp examples/data/*.csv "$dir/"
  echo "kyklos: example data copied into claim $ns/kyklos-examples ($dir)"
  exit 0
fi

kubectl apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: kyklos-examples-loader
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    fsGroup: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: loader
      image: ${image}
      command: [sleep, "600"]
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: kyklos-examples}
EOF
kubectl wait -n "$ns" --for=condition=Ready pod/kyklos-examples-loader --timeout=180s >/dev/null
for file in examples/data/*.csv; do
  kubectl cp "$file" "$ns/kyklos-examples-loader:/data/$(basename "$file")"
done
kubectl delete -n "$ns" pod/kyklos-examples-loader --wait=false >/dev/null
echo "kyklos: example data loaded into claim $ns/kyklos-examples"
