"""Command line of the data-plane workers: ``kyklos worker profile|drift|analyze ...``.

``kyklos/cli.py`` forwards ``kyklos worker ...`` here; ``python -m kyklos.worker.cli``
works too. The contracts of the two subcommands are in ``kyklos.worker.profile`` and
``kyklos.worker.drift``. Both print their summary JSON to stdout and write it to
``--termination-log`` (default ``/dev/termination-log``, which Kubernetes reads into the
Pod's status). Errors are one line on stderr, never a traceback (set ``KYKLOS_DEBUG=1``
to get one for an unexpected error).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from kyklos.api.dataset import DatasetSpec
from kyklos.api.drift import DriftMonitorSpec
from kyklos.api.modelfetch import COMMAND as FETCH_MODEL
from kyklos.api.reports import DriftErrorReason, DriftSummary, ProfileReason, ProfileSummary
from kyklos.api.worker import DriftArgs, ProfileArgs, WorkerArgsError
from kyklos.logic.conditions import spec_error
from kyklos.worker.drift import CurrentInput, run_drift
from kyklos.worker.exit_status import EXIT_INTERNAL, EXIT_UNREADABLE
from kyklos.worker.fetch_model import main as fetch_model_main
from kyklos.worker.io import describe_error, redact
from kyklos.worker.profile import run_profile

USAGE = "usage: kyklos worker {profile,drift} --flag value ... (the operator builds the argv)"
COMMANDS: dict[str, type[ProfileArgs] | type[DriftArgs]] = {
    ProfileArgs.COMMAND: ProfileArgs,
    DriftArgs.COMMAND: DriftArgs,
}


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


def _profile(args: ProfileArgs) -> int:
    try:
        spec = DatasetSpec.model_validate_json(args.spec)
    except ValidationError as err:
        summary = ProfileSummary(
            ok=False, reason=ProfileReason.INVALID_SPEC, message=spec_error(err)
        )
        return _report(summary, EXIT_UNREADABLE, args.termination_log)
    run = run_profile(spec, args.namespace, args.name, args.artifacts, seed=args.seed or 0)
    return _report(run.summary, run.exit_code, args.termination_log)


def _drift(args: DriftArgs) -> int:
    try:
        spec = DriftMonitorSpec.model_validate_json(args.spec)
    except ValidationError as err:
        summary = DriftSummary(
            ok=False, reason=DriftErrorReason.INVALID_SPEC, message=spec_error(err)
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
        seed=args.seed or 0,
    )
    return _report(run.summary, run.exit_code, args.termination_log)


def _analyze(argv: Sequence[str]) -> int:
    """``kyklos worker analyze ...`` (arguments: ``kyklos.api.serving.AnalyzeArgs``)."""
    from kyklos.api.deployment import Verdict
    from kyklos.api.serving import AnalysisSummary, AnalyzeArgs
    from kyklos.worker.analyze import run_analyze

    try:
        args = AnalyzeArgs.from_argv(argv)
    except (WorkerArgsError, ValidationError) as err:
        print(f"error: kyklos worker analyze: {err}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        summary = run_analyze(args)
    except ValidationError as err:
        summary = AnalysisSummary(ok=False, verdict=Verdict.INCONCLUSIVE, message=spec_error(err))
    except Exception as err:  # the worker's boundary: one line, not a traceback
        if os.environ.get("KYKLOS_DEBUG"):
            raise
        summary = AnalysisSummary(
            ok=False,
            verdict=Verdict.INCONCLUSIVE,
            message=redact(
                f"internal error in kyklos worker analyze: {type(err).__name__}: "
                f"{describe_error(err)}"
            ),
        )
    text = summary.to_termination_message()
    print(text, flush=True)
    try:
        with open(args.termination_log, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        print(f"warning: cannot write {args.termination_log}: {err.strerror}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kyklos worker <command> ...``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "analyze":  # its arguments are a typed model (api.serving)
        return _analyze(argv[1:])
    if argv[:1] == [FETCH_MODEL]:  # its arguments are a typed model (kyklos.api.modelfetch)
        return fetch_model_main(argv[1:])
    command = argv[0] if argv else ""
    if command not in COMMANDS:
        print(f"kyklos worker: unknown command {command!r}; {USAGE}", file=sys.stderr)
        return 2
    try:
        args = COMMANDS[command].from_argv(argv[1:])
    except (WorkerArgsError, ValidationError) as err:
        print(f"kyklos worker {command}: {err}", file=sys.stderr)
        return 2
    try:
        if isinstance(args, DriftArgs):
            return _drift(args)
        return _profile(args)
    except Exception as err:  # the worker's boundary: one line, not a traceback
        if os.environ.get("KYKLOS_DEBUG"):
            raise
        message = redact(
            f"internal error in kyklos worker {command}: {type(err).__name__}: "
            f"{describe_error(err)}"
        )
        # The termination message is all the operator (and the user's status) will see.
        summary: ProfileSummary | DriftSummary = (
            ProfileSummary(ok=False, reason=ProfileReason.PROFILE_JOB_FAILED, message=message)
            if command == "profile"
            else DriftSummary(ok=False, reason=DriftErrorReason.CHECK_FAILED, message=message)
        )
        return _report(summary, EXIT_INTERNAL, args.termination_log)


if __name__ == "__main__":
    sys.exit(main())
