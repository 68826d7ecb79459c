{{/*
RBAC rules of the operator, shared by the ClusterRole (all namespaces) and the per-namespace
Roles (watchNamespaces). Exact verbs and resources, never a wildcard; the integration test
tests/integration/test_rbac_matches_chart.py compares them with the API calls the operator
really makes (read from the API server's audit log).

Deliberately absent: Secrets. Object-store credentials reach worker pods through
`envFrom: secretRef` / `secretKeyRef` in the pod spec the operator writes; the kubelet
resolves them, so the operator itself needs no permission on Secrets and never sees a key.
*/}}

{{/* Rules for namespaced resources. Argument: the peering resource ("kopfpeerings" or ""). */}}
{{- define "kyklos.rbac.namespacedRules" -}}
# Kyklos resources: kopf watches them, and patches them for its annotations and finalizers.
# DriftMonitor creates retraining TrainingJobs, hence `create` on trainingjobs.
- apiGroups: ["kyklos.io"]
  resources: ["datasets", "modeldeployments", "driftmonitors"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["kyklos.io"]
  resources: ["trainingjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
# Status is a subresource: the operator writes every kind's status.
- apiGroups: ["kyklos.io"]
  resources: ["datasets/status", "trainingjobs/status", "modeldeployments/status", "driftmonitors/status"]
  verbs: ["get", "patch", "update"]
# Children carry ownerReferences with blockOwnerDeletion; clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift) require `update` on the
# owner's finalizers subresource for that. Documented allow-list entry.
- apiGroups: ["kyklos.io"]
  resources: ["datasets/finalizers", "trainingjobs/finalizers", "modeldeployments/finalizers", "driftmonitors/finalizers"]
  verbs: ["update"]
# Profile, drift-check and training Jobs.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Worker and trainer results arrive as container termination messages in Pod status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# The per-namespace artifact claim for pvc:// stores: created when missing, never changed
# or deleted (artifacts outlive the resources that made them).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "create"]
# Model Services and the headless Services of distributed training.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Stable and canary model Deployments.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Model autoscaling.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events for every transition (kopf posts core/v1 Events; events.k8s.io is the same store).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if . }}
# kopf peering between operator replicas (only with more than one replica).
- apiGroups: ["kopf.dev"]
  resources: [{{ . | quote }}]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Rules for cluster-scoped resources kopf observes. Argument: the root context. */}}
{{- define "kyklos.rbac.clusterRules" -}}
# kopf's CRD observer: notices when the Kyklos CRDs are installed or removed.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if .Values.watchNamespaces }}
# kopf's namespace observer, used only when specific namespaces are watched.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
