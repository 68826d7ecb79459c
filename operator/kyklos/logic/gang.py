"""Gang restart of distributed training: one failed worker restarts the whole group.

An Indexed Job replaces only a failed index, and the surviving ranks wait on a dead peer
until their collective times out. With ``spec.failurePolicy.restartAll`` (the default when
``workers > 1``) the Job carries a native ``podFailurePolicy`` that fails the whole Job as
soon as any worker exits non-zero (the Job controller then stops the other workers); the
operator replaces the failed Job by a fresh one, up to ``maxRestarts`` times, and counts
``status.restarts``. Every pod of one attempt sees the same ``KYKLOS_RUN`` and
``KYKLOS_RESTART`` (the attempt number), so a trainer can resume from its own checkpoint.
(JobSet's failure policy does the same where its CRD is installed; the sandbox and many
clusters have only batch/v1, which is enough for this.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kyklos.api.training import TrainingJobSpec

#: The Job condition reason of a Job failed by its podFailurePolicy.
POD_FAILURE_POLICY_REASON = "PodFailurePolicy"
#: Env of every trainer pod: which whole-group attempt this is (0 first).
ENV_RESTART = "KYKLOS_RESTART"
#: The Job annotation recording the attempt (observable on the child itself).
RESTART_ANNOTATION = "kyklos.io/restart"

#: Any worker exiting non-zero fails the Job at once (no per-pod retries).
FAIL_JOB_ON_ANY_WORKER_FAILURE: dict[str, Any] = {
    "rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}}]
}


def restart_all(spec: TrainingJobSpec) -> bool:
    """Whether a failed worker restarts the whole group (default: distributed jobs)."""
    policy = spec.failure_policy
    if policy is not None and policy.restart_all is not None:
        return policy.restart_all
    return spec.workers > 1


def max_restarts(spec: TrainingJobSpec) -> int:
    return spec.failure_policy.max_restarts if spec.failure_policy is not None else 3


def restarts_of(trainingjob: Mapping[str, Any], job: Mapping[str, Any] | None = None) -> int:
    """Restarts before ``job`` ran: its own attempt annotation; without a Job, the status count.

    A failed Job's annotation says which attempt failed, so deciding on it again (the index
    can still show the old Job after status already counts its restart) restarts nothing new.
    """
    annotations = ((job or {}).get("metadata") or {}).get("annotations") or {}
    recorded = int(((trainingjob.get("status") or {}).get("restarts")) or 0)
    if RESTART_ANNOTATION not in annotations:
        return recorded
    try:
        return int(annotations[RESTART_ANNOTATION])
    except ValueError:
        return recorded


def with_gang_policy(job: dict[str, Any], spec: TrainingJobSpec, restart: int) -> dict[str, Any]:
    """The Job with the fail-together policy, the attempt annotation and KYKLOS_RESTART."""
    if not restart_all(spec):
        return job
    job["metadata"].setdefault("annotations", {})[RESTART_ANNOTATION] = str(restart)
    job["spec"]["podFailurePolicy"] = FAIL_JOB_ON_ANY_WORKER_FAILURE
    # The group restarts as a whole; a pod never retries alone.
    job["spec"]["backoffLimit"] = 0
    for container in job["spec"]["template"]["spec"]["containers"]:
        env = [e for e in container.get("env") or [] if e.get("name") != ENV_RESTART]
        container["env"] = [*env, {"name": ENV_RESTART, "value": str(restart)}]
    return job


@dataclass(frozen=True)
class GangVerdict:
    """What to do with a Job that failed: restart the group, or fail for good."""

    restart: bool
    restarts: int
    message: str


def on_job_failed(
    spec: TrainingJobSpec, job_reason: str, job_message: str, restarts: int, job: str
) -> GangVerdict | None:
    """Restart the group when its policy failed the Job and restarts remain; None: not ours."""
    if not restart_all(spec) or job_reason != POD_FAILURE_POLICY_REASON:
        return None
    limit = max_restarts(spec)
    detail = job_message or "a worker failed"
    if restarts >= limit:
        return GangVerdict(
            False,
            restarts,
            f"Job {job}: {detail}; all {spec.workers} workers already restarted {restarts} "
            f"time{'s' if restarts != 1 else ''} (maxRestarts={limit})",
        )
    return GangVerdict(
        True,
        restarts + 1,
        f"Job {job}: {detail}; restarting all {spec.workers} workers "
        f"(restart {restarts + 1} of at most {limit})",
    )
