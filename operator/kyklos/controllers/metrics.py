"""Prometheus metrics of the operator (served on /metrics by `kyklos run`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from prometheus_client import Counter, Gauge, Histogram

P = ParamSpec("P")
R = TypeVar("R")

RECONCILES = Counter(
    "kyklos_reconciles_total", "Reconciles by kind and outcome.", ["kind", "outcome"]
)
RECONCILE_SECONDS = Histogram(
    "kyklos_reconcile_duration_seconds",
    "Reconcile latency by kind and outcome.",
    ["kind", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHILDREN_CREATED = Counter(
    "kyklos_children_created_total",
    "Child objects created, by owner kind and child kind.",
    ["kind", "child"],
)
JOB_OUTCOMES = Counter(
    "kyklos_job_outcomes_total", "Worker and training Job outcomes.", ["kind", "outcome"]
)
TRAININGS = Counter(
    "kyklos_trainings_total",
    "Trainings started, succeeded and failed, by namespace.",
    ["namespace", "event"],
)
TRAINING_SECONDS = Histogram(
    "kyklos_training_duration_seconds",
    "Wall-clock duration of finished trainings.",
    ["namespace", "outcome"],
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400),
)
ROLLOUTS = Counter(
    "kyklos_rollouts_total", "Rollouts started, promoted and rolled back.", ["namespace", "event"]
)
ROLLOUT_SECONDS = Histogram(
    "kyklos_rollout_duration_seconds",
    "Duration of finished rollouts.",
    ["namespace", "outcome"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
CANARY_WEIGHT = Gauge(
    "kyklos_canary_weight_percent",
    "Current canary weight per ModelDeployment.",
    ["namespace", "name"],
)
DRIFT_SCORE = Gauge(
    "kyklos_drift_score",
    "Latest drift score per monitor and feature.",
    ["namespace", "name", "feature", "method"],
)
DRIFT_SHARE = Gauge(
    "kyklos_drift_share", "Latest fraction of drifted features per monitor.", ["namespace", "name"]
)
DRIFT_CHECKS = Counter(
    "kyklos_drift_checks_total", "Drift checks run, by outcome.", ["namespace", "outcome"]
)
DRIFT_TRIPS = Counter("kyklos_drift_trips_total", "Drift trips (rising edges).", ["namespace"])
CANARY_ANALYSES = Counter(
    "kyklos_canary_analysis_total",
    "Canary analyses by verdict (Pass, Fail, Inconclusive).",
    ["namespace", "verdict"],
)
RETRAINS = Counter(
    "kyklos_retrains_total", "Retrainings triggered and their outcomes.", ["namespace", "event"]
)
# Evaluation gate (TrainingJob spec.evaluation; kyklos.logic.evaluation)
EVALUATIONS = Counter(
    "kyklos_evaluations_total",
    "Evaluation gate verdicts (the ModelAccepted reason).",
    ["namespace", "verdict"],
)
EVALUATION_VALUE = Gauge(
    "kyklos_evaluation_metric_value",
    "The gated metric of the last evaluation, per TrainingJob and role (challenger, champion).",
    ["namespace", "trainingjob", "role"],
)


@contextmanager
def reconcile_timer(kind: str) -> Iterator[None]:
    """Count and time one reconcile of ``kind``; outcome is ``error`` when it raises."""
    started = time.perf_counter()
    outcome = "success"
    try:
        yield
    except Exception:
        outcome = "error"
        raise
    finally:
        RECONCILES.labels(kind, outcome).inc()
        RECONCILE_SECONDS.labels(kind, outcome).observe(time.perf_counter() - started)


def timed(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a handler so every call is counted and timed as a reconcile of ``kind``."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with reconcile_timer(kind):
                return fn(*args, **kwargs)

        wrapper.__name__ = fn.__name__
        wrapper.__qualname__ = fn.__qualname__
        wrapper.__doc__ = fn.__doc__
        return wrapper

    return decorate
