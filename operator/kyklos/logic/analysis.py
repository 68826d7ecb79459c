"""Canary analysis: request-log layout, the checks, the verdict and what it does (pure).

Request logs (written by ``kyklos proxy``, read by ``kyklos worker analyze``) live under
``<artifacts>/<ns>/ModelDeployment/<name>/requests/<revision>/`` as Parquet files named
``<start>-<pod>-<seq>.parquet``, ``<start>`` being the UTC time of the file's first record
(``YYYYmmddTHHMMSSffffff``): a window selects files by name, then rows by time.

A step's analysis is ``steps[i].analysis`` when set, else ``strategy.analysis``. Its checks,
each judged on the step's window of live traffic, canary against stable (the reference):

- ``errorRate``: value = canary 5xx share - stable 5xx share; Fail when > ``maxIncrease``;
- ``latency``: value = canary p99 / stable p99; Fail when > ``p99MaxRatio``;
- ``predictionDrift``: the drift score (``kyklos.logic.drift_stats``: js, psi or
  wasserstein; numeric predictions as numbers, others as categories) of the canary's
  predictions (the ``predictions`` list of each sampled JSON response, or the response
  itself when it is a list) against the stable's; Fail when the score trips ``threshold``;
- ``inputDrift``: per feature of the sampled requests' rows, the same score; value = the
  share of drifted features; Fail when >= ``driftShare`` (a split that is not random);
- ``prometheus``: each query's scalar result must satisfy ``result <op> <number>``; a query
  that errors or returns no scalar is Inconclusive with the error in the message.

Verdict: Inconclusive when either side has fewer than ``minSamples`` requests in the
window (or the request logs cannot be read); otherwise Fail if any check failed, else
Inconclusive if any check was inconclusive, else Pass. Fail -> ``onFailure`` (Rollback, as
on a crash loop, or Pause); Inconclusive -> ``onInconclusive`` (Pause, Continue or
Rollback); Pass -> the step ends and the canary advances.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np

from kyklos.api.deployment import (
    CONDITION_PATTERN,
    Analysis,
    CheckResult,
    OnFailure,
    OnInconclusive,
    Strategy,
    Verdict,
)
from kyklos.logic import drift_stats
from kyklos.logic.artifacts import join_uri

FILE_TIME_FORMAT = "%Y%m%dT%H%M%S%f"
_FILE_NAME = re.compile(r"^(\d{8}T\d{12})-(.+)-(\d+)\.parquet$")
_CONDITION = re.compile(CONDITION_PATTERN)
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_OP = re.compile(r"(<=|>=|==|!=|<|>)")


# ------------------------------------------------------------------------- request logs


def request_log_prefix(artifacts: str, namespace: str, name: str, revision: str) -> str:
    """``<artifacts>/<ns>/ModelDeployment/<name>/requests/<revision>``."""
    return join_uri(artifacts, namespace, "ModelDeployment", name, "requests", revision)


def request_log_file(prefix: str, first: datetime, pod: str, sequence: int) -> str:
    """The file of one flush: named by its first record's time, the pod and a sequence."""
    stamp = first.astimezone(UTC).strftime(FILE_TIME_FORMAT)
    safe_pod = re.sub(r"[^A-Za-z0-9.-]", "-", pod) or "pod"
    return join_uri(prefix, f"{stamp}-{safe_pod}-{sequence:06d}.parquet")


def file_start(name: str) -> datetime | None:
    """The first-record time encoded in a request-log file name (None: not a log file)."""
    match = _FILE_NAME.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    return datetime.strptime(match.group(1), FILE_TIME_FORMAT).replace(tzinfo=UTC)


def files_in_window(
    names: Iterable[str], start: datetime, end: datetime, flush_seconds: float
) -> list[str]:
    """Files that may hold records of [start, end] (a file spans at most one flush interval)."""
    earliest = start - timedelta(seconds=flush_seconds * 2)
    out = []
    for name in names:
        first = file_start(name)
        if first is not None and earliest <= first <= end:
            out.append(name)
    return sorted(out)


# ------------------------------------------------------------------------------ samples


@dataclass
class RevisionSample:
    """One revision's requests in the window."""

    codes: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    inputs: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.codes)

    def add(
        self, code: int, latency: float, request_body: Any = None, response_body: Any = None
    ) -> None:
        """Add one request (its decoded JSON bodies when they were sampled)."""
        self.codes.append(int(code))
        self.latencies.append(float(latency))
        if code < 400:
            self.predictions.extend(predictions_of(response_body))
            for row in rows_of(request_body):
                for key, value in row.items():
                    self.inputs.setdefault(str(key), []).append(value)


def predictions_of(body: Any) -> list[Any]:
    """The predictions of a JSON response: its ``predictions`` list, or the list itself."""
    values = body.get("predictions") if isinstance(body, dict) else body
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, int | float | str | bool)]


def rows_of(body: Any) -> list[Mapping[str, Any]]:
    """The input rows of a JSON request: ``{"rows": [...]}`` or a list of objects."""
    rows = body.get("rows") if isinstance(body, dict) else body
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict)]


# ------------------------------------------------------------------------------- checks


def effective_analysis(strategy: Strategy, step: int) -> Analysis | None:
    """The analysis of canary step ``step``: the step's own, else the strategy's."""
    steps = strategy.steps or []
    if 0 <= step < len(steps) and steps[step].analysis is not None:
        return steps[step].analysis
    return strategy.analysis


def error_share(codes: Sequence[int]) -> float:
    """Share of 5xx answers (0 without requests)."""
    return sum(1 for c in codes if c >= 500) / len(codes) if codes else 0.0


def p99(latencies: Sequence[float]) -> float:
    """The 99th percentile latency (linear interpolation, as numpy.quantile)."""
    return float(np.quantile(np.asarray(latencies, dtype=np.float64), 0.99))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def drift_score(reference: Sequence[Any], current: Sequence[Any], method: str) -> float:
    """The drift score of ``current`` against ``reference`` (drift_stats; DriftInputError)."""
    if all(_is_number(v) for v in reference) and all(_is_number(v) for v in current):
        numeric = drift_stats.numeric_drift(
            np.asarray(reference, dtype=np.float64),
            np.asarray(current, dtype=np.float64),
            ks_pvalue=False,
        )
        return numeric.score("wasserstein" if method == "wasserstein" else method)  # type: ignore[arg-type]
    ref, ref_nulls = drift_stats.count_categories(reference)
    cur, cur_nulls = drift_stats.count_categories(current)
    categorical = drift_stats.categorical_drift(
        ref, cur, reference_nulls=ref_nulls, current_nulls=cur_nulls
    )
    # Wasserstein has no meaning for categories: their Jensen-Shannon distance stands in.
    return categorical.score("psi" if method == "psi" else "js")


def _check(
    name: str, value: float | None, limit: float, failed: bool, message: str | None = None
) -> CheckResult:
    finite = None if value is None or not math.isfinite(value) else round(value, 6)
    return CheckResult(
        name=name,
        value=finite,
        limit=limit,
        verdict=Verdict.FAIL if failed else Verdict.PASS,
        message=message if failed else None,
    )


def _inconclusive(name: str, limit: float | None, message: str) -> CheckResult:
    return CheckResult(name=name, limit=limit, verdict=Verdict.INCONCLUSIVE, message=message[:512])


def evaluate_condition(condition: str, result: float) -> bool:
    """Whether ``result <op> <number>`` holds (ValueError for another grammar)."""
    if not _CONDITION.match(condition):
        raise ValueError(f"successCondition {condition!r} is not 'result <op> <number>'")
    rest = condition.strip()[len("result") :]
    op = _OP.search(rest)
    assert op is not None  # the pattern matched
    number = float(rest[op.end() :])
    return _COMPARE[op.group(1)](result, number)


def render_query(query: str, variables: Mapping[str, str]) -> str:
    """The query with every ``{{variable}}`` replaced."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: variables.get(m.group(1), m.group(0)), query)


@dataclass(frozen=True)
class PrometheusResult:
    """A query's scalar result, or why there is none."""

    value: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The verdict of one analysis and the checks behind it."""

    verdict: Verdict
    checks: list[CheckResult]
    message: str


def analyse(
    analysis: Analysis,
    canary: RevisionSample,
    stable: RevisionSample,
    prometheus: Mapping[str, PrometheusResult] | None = None,
) -> Outcome:
    """Judge the canary against the stable on the same window of traffic."""
    checks: list[CheckResult] = []
    if analysis.error_rate is not None:
        limit = analysis.error_rate.max_increase
        if canary.count and stable.count:
            value = error_share(canary.codes) - error_share(stable.codes)
            checks.append(
                _check(
                    "errorRate",
                    value,
                    limit,
                    value > limit,
                    f"canary 5xx share {error_share(canary.codes):.3f} vs stable "
                    f"{error_share(stable.codes):.3f}: increase {value:.3f} > {limit}",
                )
            )
        else:
            checks.append(_inconclusive("errorRate", limit, "no requests on one side"))
    if analysis.latency is not None:
        limit = analysis.latency.p99_max_ratio
        if canary.count and stable.count:
            ratio = p99(canary.latencies) / max(p99(stable.latencies), 1e-6)
            checks.append(
                _check(
                    "latency",
                    ratio,
                    limit,
                    ratio > limit,
                    f"canary p99 {p99(canary.latencies) * 1000:.1f} ms is {ratio:.2f}x the "
                    f"stable's {p99(stable.latencies) * 1000:.1f} ms (> {limit})",
                )
            )
        else:
            checks.append(_inconclusive("latency", limit, "no requests on one side"))
    if analysis.prediction_drift is not None:
        pd = analysis.prediction_drift
        try:
            score = drift_score(stable.predictions, canary.predictions, pd.method)
            drifted = drift_stats.is_drifted(pd.method, score, pd.threshold)
            checks.append(
                _check(
                    "predictionDrift",
                    score,
                    pd.threshold,
                    drifted,
                    f"{pd.method} of the canary's predictions against the stable's is "
                    f"{score:.4f} >= {pd.threshold}",
                )
            )
        except drift_stats.DriftInputError as exc:
            checks.append(
                _inconclusive("predictionDrift", pd.threshold, f"no sampled predictions: {exc}")
            )
    if analysis.input_drift is not None:
        checks.append(_input_drift(analysis, canary, stable))
    if analysis.prometheus is not None:
        for query in analysis.prometheus.queries:
            result = (prometheus or {}).get(query.name) or PrometheusResult(error="not queried")
            if result.value is None:
                checks.append(
                    CheckResult(
                        name=query.name,
                        verdict=Verdict.INCONCLUSIVE,
                        message=f"prometheus query {query.name}: {result.error}"[:512],
                    )
                )
                continue
            ok = evaluate_condition(query.success_condition, result.value)
            checks.append(
                CheckResult(
                    name=query.name,
                    value=result.value if math.isfinite(result.value) else None,
                    verdict=Verdict.PASS if ok else Verdict.FAIL,
                    message=None
                    if ok
                    else f"{query.name} = {result.value:g} fails '{query.success_condition.strip()}'",
                )
            )
    return _verdict(analysis, canary, stable, checks)


def _input_drift(analysis: Analysis, canary: RevisionSample, stable: RevisionSample) -> CheckResult:
    spec = analysis.input_drift
    assert spec is not None
    features = sorted(set(canary.inputs) & set(stable.inputs))
    drifted: list[str] = []
    scored = 0
    for feature in features:
        try:
            score = drift_score(stable.inputs[feature], canary.inputs[feature], spec.method)
        except drift_stats.DriftInputError:
            continue
        scored += 1
        if drift_stats.is_drifted(spec.method, score, spec.threshold):
            drifted.append(feature)
    if not scored:
        return _inconclusive("inputDrift", spec.drift_share, "no sampled input rows on one side")
    share = len(drifted) / scored
    return _check(
        "inputDrift",
        share,
        spec.drift_share,
        share >= spec.drift_share,
        f"{len(drifted)}/{scored} input features drifted ({', '.join(drifted[:5])})",
    )


def _verdict(
    analysis: Analysis, canary: RevisionSample, stable: RevisionSample, checks: list[CheckResult]
) -> Outcome:
    counts = f"{canary.count} canary / {stable.count} stable requests"
    if canary.count < analysis.min_samples or stable.count < analysis.min_samples:
        return Outcome(
            Verdict.INCONCLUSIVE,
            checks,
            f"{counts}: fewer than minSamples={analysis.min_samples} on one side",
        )
    failed = [c for c in checks if c.verdict == Verdict.FAIL]
    if failed:
        return Outcome(
            Verdict.FAIL, checks, f"{counts}: " + "; ".join(c.message or c.name for c in failed)
        )
    unsure = [c for c in checks if c.verdict == Verdict.INCONCLUSIVE]
    if unsure:
        return Outcome(
            Verdict.INCONCLUSIVE,
            checks,
            f"{counts}: " + "; ".join(c.message or c.name for c in unsure),
        )
    return Outcome(Verdict.PASS, checks, f"{counts}: every check passed")


# --------------------------------------------------------------------- what it does next


class NextAction(StrEnum):
    """What a verdict does to the rollout."""

    CONTINUE = "Continue"
    PAUSE = "Pause"
    ROLLBACK = "Rollback"


def next_action(analysis: Analysis, verdict: Verdict) -> NextAction:
    """Pass -> Continue; Fail -> onFailure; Inconclusive -> onInconclusive."""
    if verdict == Verdict.PASS:
        return NextAction.CONTINUE
    if verdict == Verdict.FAIL:
        return (
            NextAction.ROLLBACK if analysis.on_failure == OnFailure.ROLLBACK else NextAction.PAUSE
        )
    return {
        OnInconclusive.PAUSE: NextAction.PAUSE,
        OnInconclusive.CONTINUE: NextAction.CONTINUE,
        OnInconclusive.ROLLBACK: NextAction.ROLLBACK,
    }[analysis.on_inconclusive]


# ------------------------------------------------------------------ manual rollout control

#: The annotation ``kyklos rollout promote|abort|pause|resume`` sets: ``<action>/<nonce>``.
ACTION_ANNOTATION = "kyklos.io/rollout-action"


@dataclass(frozen=True)
class RequestedAction:
    """A manual action asked for by annotation, with who asked and when."""

    action: str
    value: str
    user: str | None
    time: datetime | None


def requested_action(metadata: Mapping[str, Any]) -> RequestedAction | None:
    """The rollout action the object's annotation asks for (None: none, or malformed).

    The user is the field manager that last wrote the annotation (``managedFields``): the
    CLI names itself ``kyklos-rollout/<user>``; the API server records no more than that.
    """
    value = str((metadata.get("annotations") or {}).get(ACTION_ANNOTATION) or "")
    action = value.split("/", 1)[0].strip().lower()
    if action not in ("promote", "abort", "pause", "resume"):
        return None
    user, when = None, None
    key = f"f:{ACTION_ANNOTATION}"
    for entry in metadata.get("managedFields") or []:
        annotations = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get(
            "f:annotations"
        ) or {}
        if key in annotations:
            user = entry.get("manager")
            when = _parse_time(entry.get("time"))
    return RequestedAction(action=action, value=value[:256], user=user, time=when)


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


# ------------------------------------------------------------------------ the analysis Job

ANALYSIS_COMPONENT = "analysis"
#: An analysis Job ending without a verdict within this many seconds is Inconclusive.
ANALYSIS_DEADLINE_SECONDS = 300
#: Finished analysis Jobs are garbage-collected after this long (the verdict is in status).
ANALYSIS_TTL_SECONDS = 600
#: Wait this long after a window ends (beyond one flush interval) for the last logs.
FLUSH_SLACK_SECONDS = 2.0


def analysis_job_name(owner_name: str, revision: str, step: int, window_end: datetime) -> str:
    """A deterministic Job name per (revision, step, window): ``<name>-analysis-<hash>``."""
    key = f"{revision}/{step}/{window_end.astimezone(UTC).isoformat()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{owner_name[:40].rstrip('-')}-analysis-{digest}"


@dataclass(frozen=True)
class AnalysisJobPlan:
    """An analysis Job the controller must run (its name and the worker's arguments)."""

    name: str
    args: list[str]
