"""The manifests the parity tests judge: good ones, and bad ones naming the field at fault.

Shared by the unit parity test (pydantic vs. the emulated API server) and the integration
test that sends the same manifests to a real kube-apiserver with server-side dry-run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kyklos.api.common import API_VERSION

DELETE = object()


def manifest(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "x"}, "spec": spec}


DATASET = manifest(
    "Dataset",
    {
        "source": {"uri": "s3://data/churn.parquet", "format": "parquet"},
        "schema": {
            "features": [
                {"name": "tenure", "type": "numeric"},
                {"name": "plan", "type": "categorical", "maxNullFraction": 0.1},
            ],
            "target": "churned",
        },
        "validation": {"minRows": 10, "maxNullFraction": 0.2},
        "profile": {"sampleSize": 500, "bins": 8, "topK": 10},
        "refreshInterval": "1h30m",
    },
)
TRAINING = manifest(
    "TrainingJob",
    {
        "datasetRef": {"name": "churn", "version": "sha256-abc"},
        "image": "registry.example.com/ml/trainer:1.2.3",
        "command": ["python", "-m", "train"],
        "args": ["--verbose"],
        "env": {"LOG_LEVEL": "debug"},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "hyperparameters": {"lr": "0.1"},
        "workers": 2,
        "backoffLimit": 1,
        "activeDeadlineSeconds": 3600,
        "ttlSecondsAfterFinished": 60,
        "output": {"modelUri": "s3://models/{namespace}/{name}/{run}"},
        "evaluation": {"metric": "auc", "threshold": 0.8, "direction": "max"},
        "queueName": "team-a",
    },
)
DEPLOYMENT = manifest(
    "ModelDeployment",
    {
        "model": {"uri": "s3://models/churn/1"},
        "runtime": {"image": "python:3.12-slim", "port": 9000, "healthPath": "/ready"},
        "replicas": 3,
        "strategy": {"type": "Canary", "steps": [{"weight": 10}, {"weight": 50, "pause": "2m"}]},
    },
)
DRIFT = manifest(
    "DriftMonitor",
    {
        "modelDeploymentRef": {"name": "churn-model"},
        "reference": {"datasetRef": {"name": "churn"}},
        "current": {"datasetRef": {"name": "churn-now"}},
        "features": ["tenure", "plan"],
        "method": {"numeric": "ks", "categorical": "chi2"},
        "thresholds": {"ks": 0.01, "driftShare": 0.3},
        "interval": "15m",
        "retrain": {
            "template": {"datasetRef": {"name": "churn"}, "image": "trainer:1"},
            "useCurrentData": True,
            "cooldown": "2h",
            "maxRetrains": 5,
            "promote": "canary",
        },
    },
)
BASES = {"Dataset": DATASET, "TrainingJob": TRAINING, "ModelDeployment": DEPLOYMENT}
BASES["DriftMonitor"] = DRIFT


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    node: Any = doc
    for key in keys[:-1]:
        node = node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


@dataclass
class Case:
    """A manifest derived from a base by setting (or deleting) fields."""

    id: str
    kind: str
    changes: dict[str, Any] = field(default_factory=dict)
    at: str = ""  # for bad cases: the field path both sides must name
    base: Callable[[], dict[str, Any]] | None = None

    def manifest(self) -> dict[str, Any]:
        doc = copy.deepcopy(self.base() if self.base else BASES[self.kind])
        for dotted, value in self.changes.items():
            set_path(doc, dotted, value)
        return doc


GOOD = [
    Case("dataset-full", "Dataset"),
    Case(
        "dataset-minimal",
        "Dataset",
        {
            "spec": {
                "source": {"uri": "file:///data/x.csv"},
                "schema": {"features": [{"name": "a", "type": "numeric"}]},
            }
        },
    ),
    Case("dataset-bounds-inclusive", "Dataset", {"spec.validation.maxNullFraction": 1}),
    Case("dataset-null-optional", "Dataset", {"spec.refreshInterval": None}),
    Case("training-full", "TrainingJob"),
    Case(
        "training-champion-challenger",
        "TrainingJob",
        {
            "spec.evaluation": {
                "metric": "accuracy",
                "threshold": 0.7,
                "datasetRef": {"name": "holdout", "version": "sha256-def"},
                "compareTo": {
                    "modelDeploymentRef": {"name": "churn"},
                    "minAbsoluteChange": 0.01,
                    "minRelativeChange": 0,
                },
                "evaluator": {
                    "image": "registry.example.com/ml/eval:1",
                    "command": ["python", "-m", "score"],
                    "env": {"MODE": "strict"},
                    "resources": {"limits": {"cpu": 1}},
                },
                "onChampionError": "ThresholdOnly",
            }
        },
    ),
    Case(
        "training-minimal",
        "TrainingJob",
        {"spec": {"datasetRef": {"name": "d"}, "image": "ghcr.io/kyklos/kyklos:0.1.0"}},
    ),
    Case("training-image-digest", "TrainingJob", {"spec.image": "trainer@sha256:" + "a" * 64}),
    Case(
        "training-with-status",
        "TrainingJob",
        {
            "status": {
                "phase": "Succeeded",
                "startTime": "2026-11-23T10:00:00Z",
                "metrics": {"auc": 0.91},
                "evaluation": {"metric": "auc", "value": 0.91, "threshold": 0.8, "accepted": True},
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Succeeded"},
                    {"type": "ModelAccepted", "status": "True", "reason": "ThresholdMet"},
                ],
            }
        },
    ),
    Case("deployment-canary", "ModelDeployment"),
    Case(
        "deployment-rolling-autoscaled",
        "ModelDeployment",
        {
            "spec.model": {"fromTrainingJob": "churn-train-1", "version": "v2"},
            "spec.strategy": {"type": "RollingUpdate"},
            "spec.autoscaling": {"minReplicas": 2, "maxReplicas": 2},
        },
    ),
    Case("deployment-defaults", "ModelDeployment", {"spec.strategy": DELETE}),
    # The API server drops null fields and map values (then defaults them): not an error.
    Case(
        "deployment-null-fields",
        "ModelDeployment",
        {"spec.runtime.port": None, "spec.runtime.env": {"A": None}, "spec.autoscaling": None},
    ),
    # A whole float is an integer once the API server decoded it.
    Case("deployment-whole-float-port", "ModelDeployment", {"spec.runtime.port": 9000.0}),
    # ... also where a CEL rule reads it: such fields are numbers that are multiples of 1,
    # so CEL does not fail the rule with "expected int, got float64" (found by the random
    # mutations against the real API server).
    Case(
        "deployment-whole-float-weights",
        "ModelDeployment",
        {"spec.strategy.steps": [{"weight": 1.0}, {"weight": 50, "pause": "2m"}]},
    ),
    Case(
        "deployment-whole-float-replicas",
        "ModelDeployment",
        {"spec.autoscaling": {"minReplicas": 2.0, "maxReplicas": 3}},
    ),
    # Canary analysis (issue 14): every check, a manual step, a step override, no proxy.
    Case(
        "deployment-canary-analysis",
        "ModelDeployment",
        {
            "spec.strategy.analysis": {
                "window": "30s",
                "minSamples": 20,
                "errorRate": {"maxIncrease": 0.05},
                "latency": {"p99MaxRatio": 1.5},
                "predictionDrift": {"method": "js", "threshold": 0.2},
                "inputDrift": {"method": "psi", "threshold": 0.2, "driftShare": 0.5},
                "prometheus": {
                    "address": "http://127.0.0.1:9090",
                    "queries": [
                        {
                            "name": "errors",
                            "query": 'sum(rate(kyklos_serving_requests_total{revision="{{revision}}",code=~"5.."}[1m]))',
                            "successCondition": "result < 0.05",
                        }
                    ],
                },
                "onFailure": "Pause",
                "onInconclusive": "Continue",
            },
            "spec.strategy.steps": [
                {"weight": 10, "pause": "manual"},
                {"weight": 50, "pause": "1m", "analysis": {"minSamples": 5}},
            ],
            "spec.observability": {"proxy": False, "requestLog": {"sampleRate": 0.1}},
        },
    ),
    Case("drift-full", "DriftMonitor"),
    Case(
        "drift-promote-none-without-deployment",
        "DriftMonitor",
        {"spec.modelDeploymentRef": DELETE, "spec.retrain.promote": "none"},
    ),
    Case(
        "drift-files-without-retrain",
        "DriftMonitor",
        {
            "spec.current": {"source": {"uri": "pvc://logs/scoring/*.csv", "window": 3}},
            "spec.retrain": DELETE,
            "spec.thresholds.driftShare": 1,
        },
    ),
]

BAD = [
    # Dataset
    Case("dataset-no-uri", "Dataset", {"spec.source.uri": DELETE}, at="spec.source.uri"),
    Case("dataset-empty-uri", "Dataset", {"spec.source.uri": ""}, at="spec.source.uri"),
    Case("dataset-ftp-uri", "Dataset", {"spec.source.uri": "ftp://x/y.csv"}, at="spec.source.uri"),
    Case("dataset-bare-path", "Dataset", {"spec.source.uri": "/data/y.csv"}, at="spec.source.uri"),
    Case(
        "drift-ftp-uri",
        "DriftMonitor",
        {"spec.current.source": {"uri": "ftp://logs/*.csv"}},
        at="spec.current.source.uri",
    ),
    Case("dataset-format-enum", "Dataset", {"spec.source.format": "xlsx"}, at="spec.source.format"),
    Case("dataset-no-features", "Dataset", {"spec.schema.features": []}, at="spec.schema.features"),
    Case(
        "dataset-feature-type",
        "Dataset",
        {"spec.schema.features.0.type": "text"},
        at="spec.schema.features.0.type",
    ),
    Case(
        "dataset-duplicate-features",
        "Dataset",
        {"spec.schema.features.1.name": "tenure"},
        at="spec.schema.features",
    ),
    Case(
        "dataset-feature-name-too-long",
        "Dataset",
        {"spec.schema.features.0.name": "f" * 257},
        at="spec.schema.features.0.name",
    ),
    Case(
        "dataset-null-fraction-above-1",
        "Dataset",
        {"spec.validation.maxNullFraction": 1.5},
        at="spec.validation.maxNullFraction",
    ),
    Case(
        "dataset-negative-rows",
        "Dataset",
        {"spec.validation.minRows": -1},
        at="spec.validation.minRows",
    ),
    Case(
        "dataset-rows-as-string",
        "Dataset",
        {"spec.validation.minRows": "10"},
        at="spec.validation.minRows",
    ),
    Case("dataset-one-bin", "Dataset", {"spec.profile.bins": 1}, at="spec.profile.bins"),
    Case(
        "dataset-bad-duration",
        "Dataset",
        {"spec.refreshInterval": "1 hour"},
        "spec.refreshInterval",
    ),
    Case("dataset-unknown-field", "Dataset", {"spec.source.bucket": "b"}, at="spec.source.bucket"),
    Case(
        "dataset-secret-name",
        "Dataset",
        {"spec.source.secretRef": {"name": "Bad_Name"}},
        at="spec.source.secretRef.name",
    ),
    Case("dataset-no-spec", "Dataset", {"spec": DELETE}, at="spec"),
    # TrainingJob
    Case("training-zero-workers", "TrainingJob", {"spec.workers": 0}, at="spec.workers"),
    Case("training-bad-image", "TrainingJob", {"spec.image": "Not An Image"}, at="spec.image"),
    Case("training-no-dataset", "TrainingJob", {"spec.datasetRef": DELETE}, at="spec.datasetRef"),
    Case(
        "training-snake-case-field",
        "TrainingJob",
        {"spec.dataset_ref": {"name": "d"}, "spec.datasetRef": DELETE},
        at="spec.dataset_ref",
    ),
    Case(
        "training-direction-enum",
        "TrainingJob",
        {"spec.evaluation.direction": "up"},
        at="spec.evaluation.direction",
    ),
    Case(
        "training-negative-min-absolute-change",
        "TrainingJob",
        {
            "spec.evaluation.compareTo": {
                "modelDeploymentRef": {"name": "m"},
                "minAbsoluteChange": -0.1,
            }
        },
        at="spec.evaluation.compareTo.minAbsoluteChange",
    ),
    Case(
        "training-negative-min-relative-change",
        "TrainingJob",
        {
            "spec.evaluation.compareTo": {
                "modelDeploymentRef": {"name": "m"},
                "minRelativeChange": -1,
            }
        },
        at="spec.evaluation.compareTo.minRelativeChange",
    ),
    Case(
        "training-compare-to-without-deployment",
        "TrainingJob",
        {"spec.evaluation.compareTo": {"minAbsoluteChange": 0.1}},
        at="spec.evaluation.compareTo.modelDeploymentRef",
    ),
    Case(
        "training-on-champion-error-enum",
        "TrainingJob",
        {"spec.evaluation.onChampionError": "Ignore"},
        at="spec.evaluation.onChampionError",
    ),
    Case(
        "training-evaluator-bad-image",
        "TrainingJob",
        {"spec.evaluation.evaluator": {"image": "Not An Image"}},
        at="spec.evaluation.evaluator.image",
    ),
    Case(
        "training-no-metric",
        "TrainingJob",
        {"spec.evaluation.metric": DELETE},
        at="spec.evaluation.metric",
    ),
    Case(
        "training-bad-quantity",
        "TrainingJob",
        {"spec.resources.limits.cpu": "lots"},
        at="spec.resources.limits.cpu",
    ),
    Case(
        "training-bool-quantity",
        "TrainingJob",
        {"spec.resources.requests.memory": True},
        at="spec.resources.requests.memory",
    ),
    Case("training-env-number", "TrainingJob", {"spec.env.LOG_LEVEL": 5}, at="spec.env.LOG_LEVEL"),
    Case(
        "training-env-too-many",
        "TrainingJob",
        {"spec.env": {f"V{i}": "x" for i in range(257)}},
        at="spec.env",
    ),
    Case("training-port-range", "TrainingJob", {"spec.masterPort": 70000}, at="spec.masterPort"),
    Case(
        "training-toleration-operator",
        "TrainingJob",
        {"spec.tolerations.0.operator": "Maybe"},
        at="spec.tolerations.0.operator",
    ),
    Case(
        "training-zero-deadline",
        "TrainingJob",
        {"spec.activeDeadlineSeconds": 0},
        at="spec.activeDeadlineSeconds",
    ),
    Case("training-suspend-string", "TrainingJob", {"spec.suspend": "yes"}, at="spec.suspend"),
    Case(
        "training-status-phase",
        "TrainingJob",
        {"status": {"phase": "Exploded"}},
        at="status.phase",
    ),
    # ModelDeployment
    Case(
        "deployment-two-model-sources",
        "ModelDeployment",
        {"spec.model.fromTrainingJob": "tj"},
        at="spec.model",
    ),
    Case("deployment-no-model-source", "ModelDeployment", {"spec.model": {}}, at="spec.model"),
    Case(
        "deployment-canary-without-steps",
        "ModelDeployment",
        {"spec.strategy.steps": DELETE},
        at="spec.strategy.steps",
    ),
    Case(
        "deployment-decreasing-weights",
        "ModelDeployment",
        {"spec.strategy.steps": [{"weight": 50}, {"weight": 20}]},
        at="spec.strategy.steps",
    ),
    Case(
        "deployment-repeated-weights",
        "ModelDeployment",
        {"spec.strategy.steps": [{"weight": 20}, {"weight": 20}, {"weight": 60}]},
        at="spec.strategy.steps",
    ),
    Case(
        "deployment-fractional-weight",
        "ModelDeployment",
        {"spec.strategy.steps.0.weight": 10.5},
        at="spec.strategy.steps.0.weight",
    ),
    Case(
        "deployment-zero-weight",
        "ModelDeployment",
        {"spec.strategy.steps.0.weight": 0},
        at="spec.strategy.steps.0.weight",
    ),
    Case(
        "deployment-weight-over-100",
        "ModelDeployment",
        {"spec.strategy.steps.1.weight": 101},
        at="spec.strategy.steps.1.weight",
    ),
    Case(
        "deployment-too-many-steps",
        "ModelDeployment",
        {"spec.strategy.steps": [{"weight": w} for w in range(1, 22)]},
        at="spec.strategy.steps",
    ),
    Case(
        "deployment-bad-pause",
        "ModelDeployment",
        {"spec.strategy.steps.0.pause": "soon"},
        at="spec.strategy.steps.0.pause",
    ),
    Case(
        "deployment-analysis-min-samples-zero",
        "ModelDeployment",
        {"spec.strategy.analysis": {"minSamples": 0}},
        at="spec.strategy.analysis.minSamples",
    ),
    Case(
        "deployment-analysis-threshold-out-of-range",
        "ModelDeployment",
        {"spec.strategy.analysis": {"errorRate": {"maxIncrease": 1.5}}},
        at="spec.strategy.analysis.errorRate.maxIncrease",
    ),
    Case(
        "deployment-analysis-unknown-drift-method",
        "ModelDeployment",
        {"spec.strategy.analysis": {"predictionDrift": {"method": "ks", "threshold": 0.1}}},
        at="spec.strategy.analysis.predictionDrift.method",
    ),
    Case(
        "deployment-analysis-bad-success-condition",
        "ModelDeployment",
        {
            "spec.strategy.analysis": {
                "prometheus": {
                    "address": "http://p:9090",
                    "queries": [{"name": "q", "query": "up", "successCondition": "result <> 1"}],
                }
            }
        },
        at="spec.strategy.analysis.prometheus.queries.0.successCondition",
    ),
    Case(
        "deployment-analysis-unknown-query-variable",
        "ModelDeployment",
        {
            "spec.strategy.analysis": {
                "prometheus": {
                    "address": "http://p:9090",
                    "queries": [
                        {"name": "q", "query": 'up{x="{{pod}}"}', "successCondition": "result > 0"}
                    ],
                }
            }
        },
        at="spec.strategy.analysis.prometheus.queries.0.query",
    ),
    # Canary analysis bad input (issue 14): an unknown check, thresholds out of range,
    # minSamples < 1 in a step's own analysis, a malformed PromQL template.
    Case(
        "deployment-analysis-unknown-check",
        "ModelDeployment",
        {"spec.strategy.analysis": {"cpuUsage": {"max": 0.9}}},
        at="spec.strategy.analysis.cpuUsage",
    ),
    Case(
        "deployment-step-analysis-unknown-check",
        "ModelDeployment",
        {"spec.strategy.steps.1.analysis": {"minSamples": 5, "gpuMemory": {"max": 1}}},
        at="spec.strategy.steps.1.analysis.gpuMemory",
    ),
    Case(
        "deployment-analysis-drift-share-above-one",
        "ModelDeployment",
        {"spec.strategy.analysis": {"inputDrift": {"threshold": 0.2, "driftShare": 1.5}}},
        at="spec.strategy.analysis.inputDrift.driftShare",
    ),
    Case(
        "deployment-analysis-latency-ratio-below-one",
        "ModelDeployment",
        {"spec.strategy.analysis": {"latency": {"p99MaxRatio": 0.5}}},
        at="spec.strategy.analysis.latency.p99MaxRatio",
    ),
    Case(
        "deployment-analysis-drift-threshold-zero",
        "ModelDeployment",
        {"spec.strategy.analysis": {"predictionDrift": {"threshold": 0}}},
        at="spec.strategy.analysis.predictionDrift.threshold",
    ),
    Case(
        "deployment-step-analysis-min-samples-zero",
        "ModelDeployment",
        {"spec.strategy.steps.0.analysis": {"minSamples": 0}},
        at="spec.strategy.steps.0.analysis.minSamples",
    ),
    Case(
        "deployment-analysis-unclosed-query-variable",
        "ModelDeployment",
        {
            "spec.strategy.analysis": {
                "prometheus": {
                    "address": "http://p:9090",
                    "queries": [
                        {
                            "name": "q",
                            "query": 'up{rev="{{revision}"}',
                            "successCondition": "result > 0",
                        }
                    ],
                }
            }
        },
        at="spec.strategy.analysis.prometheus.queries.0.query",
    ),
    Case(
        "deployment-bad-manual-pause",
        "ModelDeployment",
        {"spec.strategy.steps": [{"weight": 10, "pause": "manually"}]},
        at="spec.strategy.steps.0.pause",
    ),
    Case(
        "deployment-sample-rate-above-one",
        "ModelDeployment",
        {"spec.observability": {"requestLog": {"sampleRate": 2}}},
        at="spec.observability.requestLog.sampleRate",
    ),
    Case(
        "deployment-strategy-enum",
        "ModelDeployment",
        {"spec.strategy.type": "BlueGreen"},
        at="spec.strategy.type",
    ),
    Case(
        "deployment-min-above-max",
        "ModelDeployment",
        {"spec.autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        at="spec.autoscaling.minReplicas",
    ),
    Case(
        "deployment-autoscaling-no-max",
        "ModelDeployment",
        {"spec.autoscaling": {"minReplicas": 2}},
        at="spec.autoscaling.maxReplicas",
    ),
    Case("deployment-port-zero", "ModelDeployment", {"spec.runtime.port": 0}, "spec.runtime.port"),
    Case(
        "deployment-relative-health-path",
        "ModelDeployment",
        {"spec.runtime.healthPath": "healthz"},
        at="spec.runtime.healthPath",
    ),
    Case("deployment-no-runtime", "ModelDeployment", {"spec.runtime": DELETE}, at="spec.runtime"),
    # ...but an unknown field is an error even when null, and a null list item is a type error.
    Case(
        "deployment-unknown-null-field",
        "ModelDeployment",
        {"spec.runtime.extra": None},
        at="spec.runtime.extra",
    ),
    Case(
        "deployment-fractional-port",
        "ModelDeployment",
        {"spec.runtime.port": 9000.5},
        at="spec.runtime.port",
    ),
    Case(
        "deployment-null-arg",
        "ModelDeployment",
        {"spec.runtime.args": ["--port", None]},
        at="spec.runtime.args.1",
    ),
    # DriftMonitor
    Case(
        "drift-two-current-sources",
        "DriftMonitor",
        {"spec.current.source": {"uri": "s3://b/*.parquet"}},
        at="spec.current",
    ),
    Case("drift-no-current-source", "DriftMonitor", {"spec.current": {}}, at="spec.current"),
    Case(
        "drift-canary-without-deployment",
        "DriftMonitor",
        {"spec.modelDeploymentRef": DELETE},
        at="spec.modelDeploymentRef",
    ),
    Case(
        "drift-default-promote-without-deployment",
        "DriftMonitor",
        {"spec.modelDeploymentRef": DELETE, "spec.retrain.promote": DELETE},
        at="spec.modelDeploymentRef",
    ),
    Case(
        "drift-current-data-from-files",
        "DriftMonitor",
        {"spec.current": {"source": {"uri": "s3://b/*.csv"}}},
        at="spec.retrain.useCurrentData",
    ),
    Case(
        "drift-duplicate-features",
        "DriftMonitor",
        {"spec.features": ["tenure", "tenure"]},
        at="spec.features",
    ),
    Case(
        "drift-method-enum",
        "DriftMonitor",
        {"spec.method.numeric": "mmd"},
        at="spec.method.numeric",
    ),
    Case(
        "drift-zero-share",
        "DriftMonitor",
        {"spec.thresholds.driftShare": 0},
        at="spec.thresholds.driftShare",
    ),
    Case("drift-bad-interval", "DriftMonitor", {"spec.interval": "5 minutes"}, "spec.interval"),
    Case(
        "drift-zero-window",
        "DriftMonitor",
        {"spec.current": {"source": {"uri": "s3://b/*.csv", "window": 0}}},
        at="spec.current.source.window",
    ),
    Case(
        "drift-template-zero-workers",
        "DriftMonitor",
        {"spec.retrain.template.workers": 0},
        at="spec.retrain.template.workers",
    ),
    Case("drift-no-reference", "DriftMonitor", {"spec.reference": DELETE}, at="spec.reference"),
    Case("drift-small-sample", "DriftMonitor", {"spec.sampleSize": 50}, at="spec.sampleSize"),
]


def path_of(dotted: str) -> tuple[str | int, ...]:
    return tuple(int(k) if k.isdigit() else k for k in dotted.split("."))


# --- pod templates (kyklos.api.podtemplate): one override shape on TrainingJob and
# ModelDeployment; reserved names and host access rejected naming the field ---------------

POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "ml"}, "annotations": {"cost-center": "42"}},
    "serviceAccountName": "trainer",
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    },
    "imagePullSecrets": [{"name": "registry"}],
    "priorityClassName": "high",
    "runtimeClassName": "nvidia",
    "securityContext": {"runAsUser": 1000, "fsGroup": 1000, "runAsNonRoot": True},
    "volumes": [
        {
            "name": "certs",
            "secret": {"secretName": "ca", "items": [{"key": "ca.crt", "path": "ca"}]},
        },
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ],
    "hostNetwork": False,
    "container": {
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PLAIN", "value": "1"},
        ],
        "envFrom": [
            {"secretRef": {"name": "s3"}},
            {"configMapRef": {"name": "cfg"}, "prefix": "C_"},
        ],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "securityContext": {"readOnlyRootFilesystem": False, "privileged": False},
        "volumeMounts": [{"name": "certs", "mountPath": "/etc/certs", "readOnly": True}],
    },
}

GOOD.extend(
    [
        Case("training-pod-template", "TrainingJob", {"spec.template": POD_TEMPLATE}),
        Case("deployment-pod-template", "ModelDeployment", {"spec.runtime.template": POD_TEMPLATE}),
        Case("deployment-pod-template-empty", "ModelDeployment", {"spec.runtime.template": {}}),
    ]
)


def _with_template(path: str, **changes: Any) -> dict[str, Any]:
    template = copy.deepcopy(POD_TEMPLATE)
    for dotted, value in changes.items():
        set_path(template, dotted.replace("__", "."), value)
    return {path: template}


BAD.extend(
    [
        Case(
            "training-template-kyklos-env",
            "TrainingJob",
            _with_template("spec.template", container__env__0__name="KYKLOS_MODEL_URI"),
            at="spec.template.container.env.0.name",
        ),
        Case(
            "training-template-rank-env",
            "TrainingJob",
            _with_template("spec.template", container__env__2__name="RANK"),
            at="spec.template.container.env.2.name",
        ),
        Case(
            "deployment-template-reserved-volume",
            "ModelDeployment",
            _with_template("spec.runtime.template", volumes__1__name="tmp"),
            at="spec.runtime.template.volumes.1.name",
        ),
        Case(
            "deployment-template-pvc-volume-name",
            "ModelDeployment",
            _with_template("spec.runtime.template", volumes__0__name="pvc-models"),
            at="spec.runtime.template.volumes.0.name",
        ),
        Case(
            "deployment-template-volume-two-sources",
            "ModelDeployment",
            _with_template("spec.runtime.template", volumes__1__configMap={"name": "cfg"}),
            at="spec.runtime.template.volumes.1",
        ),
        Case(
            "training-template-host-network",
            "TrainingJob",
            _with_template("spec.template", hostNetwork=True),
            at="spec.template.hostNetwork",
        ),
        Case(
            "deployment-template-host-pid",
            "ModelDeployment",
            _with_template("spec.runtime.template", hostPID=True),
            at="spec.runtime.template.hostPID",
        ),
        Case(
            "deployment-template-privileged",
            "ModelDeployment",
            _with_template("spec.runtime.template", container__securityContext__privileged=True),
            at="spec.runtime.template.container.securityContext.privileged",
        ),
        Case(
            "drift-retrain-template-reserved-env",
            "DriftMonitor",
            {
                "spec.retrain.template.template": {
                    "container": {"env": [{"name": "KYKLOS_RUN", "value": "x"}]}
                }
            },
            at="spec.retrain.template.template.container.env.0.name",
        ),
    ]
)
