"""``kyklos worker analyze``: judge a canary step on both revisions' request logs.

Reads the Parquet request logs of the canary and the stable revision (written by ``kyklos
proxy``, layout in ``kyklos.logic.analysis``) for the step's window ``[windowEnd - window,
windowEnd]``, asks Prometheus the step's queries (at ``windowEnd``), and judges with
``kyklos.logic.analysis.analyse`` (statistics from ``kyklos.logic.drift_stats``). The
result is an :class:`~kyklos.api.serving.AnalysisSummary` on stdout and in the
termination log. A store that cannot be read makes the verdict Inconclusive naming the
cause (never a crash): the operator then acts per ``onInconclusive``. A revision with no
request-log directory is "no traffic" only when the store's root can be listed or does
not exist yet (an object store has no prefix before its first write); a root that cannot
be listed for another reason (not a directory, permission, connection refused) is the cause
named instead, since the proxies could not have written there either.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq

from kyklos.api.deployment import Analysis, Verdict
from kyklos.api.serving import AnalysisSummary, AnalyzeArgs, RequestRecord
from kyklos.logic.analysis import (
    PrometheusResult,
    RevisionSample,
    analyse,
    files_in_window,
    render_query,
    request_log_prefix,
)
from kyklos.logic.durations import duration_seconds
from kyklos.worker.io import SourceError, describe_error, resolve

PROMETHEUS_TIMEOUT = 10.0


def read_revision(args: AnalyzeArgs, revision: str, window_seconds: float) -> RevisionSample:
    """One revision's requests in the window (SourceError when the store cannot be read)."""
    start = args.window_end - timedelta(seconds=window_seconds)
    prefix = request_log_prefix(args.artifacts, args.namespace, args.name, revision)
    loc = resolve(prefix)
    try:
        if loc.fs.exists(loc.path):
            names = loc.fs.ls(loc.path, detail=False)
        else:
            names = []
            _check_store_root(args.artifacts)
        chosen = files_in_window(names, start, args.window_end, args.flush_seconds)
        sample = RevisionSample()
        for path in chosen:
            table = pq.read_table(loc.fs.open(path, "rb"))
            for row in table.to_pylist():
                record = RequestRecord.from_row(row)
                if not start <= record.time <= args.window_end:
                    continue
                sample.add(
                    record.code,
                    record.latency_seconds,
                    _json_or_none(record.request_json),
                    _json_or_none(record.response_json),
                )
    except OSError as err:
        raise SourceError(
            "SourceUnreachable", f"request logs of revision {revision}: {describe_error(err)}"
        ) from None
    return sample


def _check_store_root(artifacts: str) -> None:
    """SourceError naming why the artifact store's root cannot be listed (if it cannot)."""
    root = resolve(artifacts)
    try:
        root.fs.ls(root.path, detail=False)
    except FileNotFoundError:
        return  # nothing written yet: no traffic, judged as such
    except OSError as err:
        raise SourceError(
            "SourceUnreachable", f"artifact store {artifacts}: {describe_error(err)}"
        ) from None


def _json_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def query_prometheus(address: str, query: str, at: float) -> PrometheusResult:
    """The scalar result of an instant query (or why there is none)."""
    url = (
        address.rstrip("/")
        + "/api/v1/query?"
        + urllib.parse.urlencode({"query": query, "time": f"{at:.3f}"})
    )
    try:
        with urllib.request.urlopen(url, timeout=PROMETHEUS_TIMEOUT) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            body = json.loads(err.read())
        except ValueError:
            return PrometheusResult(error=f"HTTP {err.code} from {address}")
    except (OSError, ValueError) as err:
        return PrometheusResult(error=f"{address}: {describe_error(err)}")
    if body.get("status") != "success":
        return PrometheusResult(error=f"{body.get('errorType')}: {body.get('error')}")
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        value = result[1]
    elif data.get("resultType") == "vector" and isinstance(result, list):
        if len(result) != 1:
            return PrometheusResult(
                error=f"the query returned {len(result)} series; it must return exactly one"
            )
        value = result[0]["value"][1]
    else:
        return PrometheusResult(error=f"unsupported result type {data.get('resultType')}")
    number = float(value)
    if math.isnan(number):
        return PrometheusResult(error="the query returned NaN (no data in the range?)")
    return PrometheusResult(number)


def run_analyze(args: AnalyzeArgs) -> AnalysisSummary:
    """Judge one canary step; never raises for data problems (Inconclusive instead)."""
    analysis = Analysis.model_validate_json(args.analysis)
    window = duration_seconds(analysis.window, "analysis.window")
    start = args.window_end - timedelta(seconds=window)
    try:
        canary = read_revision(args, args.canary_revision, window)
        stable = read_revision(args, args.stable_revision, window)
    except SourceError as err:
        return AnalysisSummary(
            ok=False,
            verdict=Verdict.INCONCLUSIVE,
            start_time=start,
            end_time=args.window_end,
            message=f"cannot read the request logs: {err.message}",
        )
    results: Mapping[str, PrometheusResult] = {}
    if analysis.prometheus is not None:
        variables = {
            "revision": args.canary_revision,
            "canaryRevision": args.canary_revision,
            "stableRevision": args.stable_revision,
            "namespace": args.namespace,
            "name": args.name,
        }
        at = args.window_end.timestamp()
        results = {
            q.name: query_prometheus(
                analysis.prometheus.address, render_query(q.query, variables), at
            )
            for q in analysis.prometheus.queries
        }
    outcome = analyse(analysis, canary, stable, results)
    return AnalysisSummary(
        ok=True,
        verdict=outcome.verdict,
        samples={"canary": canary.count, "stable": stable.count},
        checks=outcome.checks,
        start_time=start,
        end_time=args.window_end,
        message=outcome.message,
    )
