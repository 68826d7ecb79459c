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
# Kyklos resources. kopf watches all four; it patches Datasets and DriftMonitors (their
# daemons keep state in annotations and a finalizer); a DriftMonitor patches the
# ModelDeployment it promotes a retrained model to. `kyklos run` checks list, watch and
# patch on every kind before it starts. Nothing uses `update` (PUT): every write is a patch.
- apiGroups: ["kyklos.io"]
  resources: ["datasets", "trainingjobs", "modeldeployments", "driftmonitors"]
  verbs: ["get", "list", "watch", "patch"]
# A DriftMonitor creates its retraining TrainingJobs.
- apiGroups: ["kyklos.io"]
  resources: ["trainingjobs"]
  verbs: ["create"]
# Status is a subresource; the operator merge-patches only what changed.
- apiGroups: ["kyklos.io"]
  resources: ["datasets/status", "trainingjobs/status", "modeldeployments/status", "driftmonitors/status"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion; clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift) require `update` on the
# owner's finalizers subresource for that.
- apiGroups: ["kyklos.io"]
  resources: ["datasets/finalizers", "trainingjobs/finalizers", "modeldeployments/finalizers", "driftmonitors/finalizers"]
  verbs: ["update"]
# Profile, drift-check and training Jobs: created, suspended/resumed (patch), and deleted
# when a profile or check is re-run.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Worker and trainer results arrive as container termination messages in Pod status,
# read from the watch (and a list), never one by one.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# The per-namespace artifact claim for pvc:// stores: created when missing, never changed
# or deleted (artifacts outlive the resources that made them).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "create"]
# Model Services and the headless Services of distributed training (garbage-collected
# through their owner, never deleted by the operator).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Stable and canary model Deployments: canary steps patch replicas; a finished canary is
# deleted.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Model autoscaling (spec.autoscaling); deleted when autoscaling is turned off.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events for every transition (core/v1; kopf's own per-handler Events are turned off).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
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
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
# kopf's namespace observer, used only when specific namespaces are watched.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
