"""Every phase transition of every kind posts an Event, with the condition's reason.

A watch on each resource records every phase it passes through; each change must have an
Event about that resource posted by Kyklos. Runs the real operator; the node agent's
``process`` kubelet runs the real workers and the example trainer, and scripts the model
server (``serve``).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import GROUP, VERSION, Kyklos, churn_dataset

pytestmark = [pytest.mark.sandbox_only, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
KYKLOS_IMAGE = "ghcr.io/kyklos/kyklos:0.1.0"
FEATURES = [
    {"name": "tenure_months", "type": "numeric"},
    {"name": "monthly_charges", "type": "numeric"},
    {"name": "support_calls", "type": "numeric"},
    {"name": "contract", "type": "categorical"},
    {"name": "payment_method", "type": "categorical"},
]
POLICY = {
    "rules": [
        {"image": "registry.test/churn-server:*", "action": "serve", "readyAfter": 0.5},
        {"image": "*kyklos*", "action": "process", "entrypoint": ["kyklos"]},
        {"image": "*", "action": {"Always": "serve", "Never": "succeed", "OnFailure": "succeed"}},
    ]
}
SETTLED = {
    "datasets": ("Ready",),
    "trainingjobs": ("Succeeded",),
    "modeldeployments": ("Available",),
    "driftmonitors": ("Healthy", "Drifted", "Retraining"),
}


class PhaseRecorder:
    """Watches one namespace's resources of one plural and keeps each object's phases."""

    def __init__(self, k8s: Any, namespace: str, plural: str) -> None:
        from kubernetes import client, watch

        self.phases: dict[str, list[str]] = {}
        self._watch = watch.Watch()
        api = client.CustomObjectsApi(k8s)

        def run() -> None:
            try:
                record()
            except Exception:  # the stream ends when the test stops it or the namespace goes
                return

        def record() -> None:
            for event in self._watch.stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                timeout_seconds=600,
            ):
                obj = event["object"]
                phase = (obj.get("status") or {}).get("phase")
                seen = self.phases.setdefault(obj["metadata"]["name"], [])
                if phase and (not seen or seen[-1] != phase):
                    seen.append(phase)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._watch.stop()


def _events_about(k8s: Any, namespace: str, kind: str, name: str) -> list[Any]:
    from kubernetes import client

    return [
        e
        for e in client.CoreV1Api(k8s).list_namespaced_event(namespace).items
        if e.involved_object.kind == kind
        and e.involved_object.name == name
        and e.source
        and e.source.component == "kyklos"
    ]


#: The resource of each kind the story follows.
FOLLOWED = {
    "datasets": "reference",
    "trainingjobs": "initial",
    "modeldeployments": "churn",
    "driftmonitors": "watch",
}


def test_every_phase_transition_of_every_kind_posts_an_event(
    k8s: Any,
    namespace: str,
    crds_installed: None,
    operator: Any,
    kubelet_policy: Any,
    data_dir: Path,
) -> None:
    kubelet_policy(POLICY)
    recorders = {plural: PhaseRecorder(k8s, namespace, plural) for plural in SETTLED}
    ky = Kyklos(k8s, namespace)
    try:
        operator({"KYKLOS_ARTIFACTS_URI": f"file://{data_dir / 'artifacts'}"})
        _create_all(ky, data_dir)
        for plural, name in FOLLOWED.items():
            ky.wait_status(
                plural,
                name,
                lambda s, p=plural: s.get("phase") in SETTLED[p],
                timeout=300,
                what=f"a settled phase {SETTLED[plural]}",
            )
    finally:
        for recorder in recorders.values():
            recorder.stop()
    problems = []
    for plural, name in FOLLOWED.items():
        kind = ky.get(plural, name)["kind"]
        phases = recorders[plural].phases.get(name, [])
        events = _events_about(k8s, namespace, kind, name)
        told = [(e.reason, e.message) for e in events]
        ready = ky.condition(plural, name, "Ready") or {}
        if len(phases) < 2:
            problems.append(f"{kind}: the watch saw only {phases}")
        # At least one Event per transition the watch saw ...
        if len(events) < len(phases) - 1:
            problems.append(f"{kind}: phases {phases} but Events {told}")
        # ... and the last one is told with the condition's reason (or names the phase).
        if ready.get("reason") not in {e.reason for e in events} and not any(
            phases and phases[-1] in (e.message or "") for e in events
        ):
            problems.append(f"{kind}: Ready {ready.get('reason')} not among Events {told}")
    assert not problems, "\n".join(problems)


def _create_all(ky: Kyklos, data_dir: Path) -> None:
    """Two Datasets, a TrainingJob, a ModelDeployment serving it and a DriftMonitor."""
    for name in ("reference", "current"):
        path = data_dir / f"{name}.csv"
        shutil.copy(REPO / "examples" / "data" / f"churn-{name}.csv", path)
        manifest = churn_dataset(name, path, FEATURES)
        manifest["spec"]["schema"]["target"] = "churned"
        ky.create("datasets", manifest)
    trainer = {
        "datasetRef": {"name": "reference"},
        "image": KYKLOS_IMAGE,
        "command": ["python", "-m", "kyklos.examples.train"],
        "hyperparameters": {"epochs": "50"},
        "backoffLimit": 0,
        "evaluation": {"metric": "accuracy", "threshold": 0.5},
    }
    ky.create("trainingjobs", {"metadata": {"name": "initial"}, "spec": trainer})
    ky.create(
        "modeldeployments",
        {
            "metadata": {"name": "churn"},
            "spec": {
                "model": {"fromTrainingJob": "initial"},
                "runtime": {"image": "registry.test/churn-server:1", "port": 8080},
                "replicas": 1,
                # A scripted server (the kubelet policy's serve) answers no real traffic.
                "observability": {"proxy": False},
            },
        },
    )
    ky.create(
        "driftmonitors",
        {
            "metadata": {"name": "watch"},
            "spec": {
                "reference": {"datasetRef": {"name": "reference"}},
                "current": {"datasetRef": {"name": "current"}},
                "interval": "1h",
                "sampleSize": 300,
            },
        },
    )
