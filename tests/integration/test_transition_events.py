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


@pytest.mark.parametrize("plural", list(SETTLED))
def test_every_phase_transition_posts_an_event(
    plural: str,
    k8s: Any,
    namespace: str,
    crds_installed: None,
    operator: Any,
    kubelet_policy: Any,
    data_dir: Path,
) -> None:
    kubelet_policy(POLICY)
    recorder = PhaseRecorder(k8s, namespace, plural)
    try:
        operator({"KYKLOS_ARTIFACTS_URI": f"file://{data_dir / 'artifacts'}"})
        ky = Kyklos(k8s, namespace)
        name = _bring_to_settled(ky, plural, data_dir)
        ky.wait_status(
            plural,
            name,
            lambda s: s.get("phase") in SETTLED[plural],
            timeout=300,
            what=f"a settled phase {SETTLED[plural]}",
        )
    finally:
        recorder.stop()
    kind = ky.get(plural, name)["kind"]
    phases = recorder.phases.get(name, [])
    assert len(phases) >= 2, phases
    events = _events_about(k8s, namespace, kind, name)
    # At least one Event per transition the watch saw.
    assert len(events) >= len(phases) - 1, (phases, [(e.reason, e.message) for e in events])
    ready = ky.condition(plural, name, "Ready") or {}
    final_reasons = {e.reason for e in events}
    assert ready.get("reason") in final_reasons or any(
        phases[-1] in (e.message or "") for e in events
    ), (phases, ready, [(e.reason, e.message) for e in events])


def _bring_to_settled(ky: Kyklos, plural: str, data_dir: Path) -> str:
    """Create what ``plural``'s resource needs, then the resource; return its name."""
    for name in ("reference", "current"):
        path = data_dir / f"{name}.csv"
        shutil.copy(REPO / "examples" / "data" / f"churn-{name}.csv", path)
        manifest = churn_dataset(name, path, FEATURES)
        manifest["spec"]["schema"]["target"] = "churned"
        ky.create("datasets", manifest)
    if plural == "datasets":
        return "reference"
    trainer = {
        "datasetRef": {"name": "reference"},
        "image": KYKLOS_IMAGE,
        "command": ["python", "-m", "kyklos.examples.train"],
        "hyperparameters": {"epochs": "50"},
        "backoffLimit": 0,
        "evaluation": {"metric": "accuracy", "threshold": 0.5},
    }
    ky.create("trainingjobs", {"metadata": {"name": "initial"}, "spec": trainer})
    if plural == "trainingjobs":
        return "initial"
    if plural == "modeldeployments":
        ky.create(
            "modeldeployments",
            {
                "metadata": {"name": "churn"},
                "spec": {
                    "model": {"fromTrainingJob": "initial"},
                    "runtime": {"image": "registry.test/churn-server:1", "port": 8080},
                    "replicas": 1,
                },
            },
        )
        return "churn"
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
    return "watch"
