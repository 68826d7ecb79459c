"""Command line of the data-plane workers: ``kyklos worker profile|drift ...``.

``kyklos/cli.py`` forwards ``kyklos worker ...`` here; ``python -m kyklos.worker.cli``
works too. The contracts of the two subcommands are in ``kyklos.worker.profile`` and
``kyklos.worker.drift``. Both print their summary JSON to stdout and write it to
``--termination-log`` (default ``/dev/termination-log``, which Kubernetes reads into the
Pod's status). Errors are one line on stderr, never a traceback (set ``KYKLOS_DEBUG=1``
to get one for an unexpected error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from kyklos.api.dataset import DatasetSpec
from kyklos.api.drift import DriftMonitorSpec
from kyklos.api.modelfetch import COMMAND as FETCH_MODEL
from kyklos.api.reports import DriftErrorReason, DriftSummary, ProfileReason, ProfileSummary
from kyklos.worker.drift import CurrentInput, run_drift
from kyklos.worker.exit_status import EXIT_INTERNAL, EXIT_UNREADABLE
from kyklos.worker.fetch_model import main as fetch_model_main
from kyklos.worker.io import describe_error, redact
from kyklos.worker.profile import run_profile

DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kyklos worker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, kind: str) -> None:
        p.add_argument("--spec", required=True, help=f"the {kind} spec as JSON")
        p.add_argument("--namespace", required=True)
        p.add_argument("--name", required=True)
        p.add_argument("--artifacts", required=True, help="artifact store URI")
        p.add_argument("--termination-log", default=DEFAULT_TERMINATION_LOG)
        p.add_argument("--seed", type=int, default=0, help="seed of the row sample")

    prof = sub.add_parser("profile", help="validate, version and profile a Dataset source")
    common(prof, "Dataset")

    drift = sub.add_parser("drift", help="compare current data against a Dataset's reference")
    common(drift, "DriftMonitor")
    drift.add_argument("--reference-profile", required=True)
    drift.add_argument("--reference-sample", required=True)
    cur = drift.add_mutually_exclusive_group()
    cur.add_argument("--current-uri", help="URI or glob of the current files")
    cur.add_argument("--current-sample", help="a current Dataset's sample.parquet")
    drift.add_argument("--current-format", choices=["csv", "parquet", "jsonl"])
    drift.add_argument("--window", type=int, help="latest N files of --current-uri")
    drift.add_argument("--check-id", required=True)
    return parser


def _spec_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "spec"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"spec.{where}: {first['msg']}{more}"


def _report(summary: ProfileSummary | DriftSummary, exit_code: int, termination_log: str) -> int:
    """Print the summary, write it to the termination log; return ``exit_code``."""
    text = summary.to_termination_message()
    print(text, flush=True)
    try:
        with open(termination_log, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        print(f"warning: cannot write {termination_log}: {err.strerror}", file=sys.stderr)
    if not summary.ok:
        print(f"error: {summary.reason}: {summary.message}", file=sys.stderr)
    return exit_code


def _profile(args: argparse.Namespace) -> int:
    try:
        spec = DatasetSpec.model_validate_json(args.spec)
    except ValidationError as err:
        summary = ProfileSummary(
            ok=False, reason=ProfileReason.INVALID_SPEC, message=_spec_error(err)
        )
        return _report(summary, EXIT_UNREADABLE, args.termination_log)
    run = run_profile(spec, args.namespace, args.name, args.artifacts, seed=args.seed)
    return _report(run.summary, run.exit_code, args.termination_log)


def _drift(args: argparse.Namespace) -> int:
    try:
        spec = DriftMonitorSpec.model_validate_json(args.spec)
    except ValidationError as err:
        summary = DriftSummary(
            ok=False, reason=DriftErrorReason.INVALID_SPEC, message=_spec_error(err)
        )
        return _report(summary, EXIT_UNREADABLE, args.termination_log)
    current = CurrentInput(
        uri=args.current_uri,
        format=args.current_format,
        window=args.window,
        sample_uri=args.current_sample,
    )
    run = run_drift(
        spec,
        args.namespace,
        args.name,
        args.artifacts,
        reference_profile=args.reference_profile,
        reference_sample=args.reference_sample,
        current=current,
        check_id=args.check_id,
        seed=args.seed,
    )
    return _report(run.summary, run.exit_code, args.termination_log)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kyklos worker <command> ...``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [FETCH_MODEL]:  # its arguments are a typed model (kyklos.api.modelfetch)
        return fetch_model_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _profile(args) if args.command == "profile" else _drift(args)
    except Exception as err:  # the worker's boundary: one line, not a traceback
        if os.environ.get("KYKLOS_DEBUG"):
            raise
        message = redact(
            f"internal error in kyklos worker {args.command}: {type(err).__name__}: "
            f"{describe_error(err)}"
        )
        # The termination message is all the operator (and the user's status) will see.
        summary: ProfileSummary | DriftSummary = (
            ProfileSummary(ok=False, reason=ProfileReason.PROFILE_JOB_FAILED, message=message)
            if args.command == "profile"
            else DriftSummary(ok=False, reason=DriftErrorReason.CHECK_FAILED, message=message)
        )
        return _report(summary, EXIT_INTERNAL, args.termination_log)


if __name__ == "__main__":
    sys.exit(main())
