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
