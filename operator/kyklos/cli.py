"""The `kyklos` command: version, crds, run, sandbox, worker, proxy, rollout, traffic."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kyklos import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kyklos",
        description="Kyklos: the machine-learning lifecycle as Kubernetes resources.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the version")

    crds = sub.add_parser("crds", help="write the CRDs rendered from the API models")
    crds.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 and print a diff when a checked-in file differs",
    )
    crds.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="repository root to write crds/ and charts/kyklos/templates/crds/ under (default: .)",
    )

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (default)"
    )
    run.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    run.add_argument("--metrics-port", type=int, default=8080, help="port of /metrics (0: off)")
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL served by kopf ('' to disable)",
    )
    peering = run.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true", help="no peering (single replica)")
    peering.add_argument("--peering", default=None, help="kopf peering name for leader election")
    run.add_argument("--worker-image", default=None, help="image of worker Jobs")
    run.add_argument("--artifacts-uri", default=None, help="artifact store URI")
    run.add_argument(
        "--artifacts-secret", default=None, help="Secret with object-store credentials"
    )
    run.add_argument("--worker-service-account", default=None, help="ServiceAccount of worker pods")
    run.add_argument("--worker-resources", default=None, help='JSON {"requests":{},"limits":{}}')
    run.add_argument(
        "--worker-deadline",
        default=None,
        help="longest a profile Job may run: a duration (30m, 1h) or seconds; 0 for none (1h)",
    )
    run.add_argument(
        "--executor-workers",
        default=None,
        help="threads for handlers' short blocking API calls (16); not a limit on objects",
    )
    run.add_argument(
        "--mlflow-tracking-uri",
        default=None,
        help="MLflow tracking server for registry sync (spec.registry); needs kyklos[mlflow]",
    )
    run.add_argument("--log-level", default=None, help="debug, info, warning or error")
    run.add_argument("--log-format", default=None, help="json or text")

    sub.add_parser(
        "sandbox", help="a local Kubernetes control plane (build, serve)", add_help=False
    )
    sub.add_parser(
        "worker", help="data-plane workers (profile, drift, analyze, fetch-model)", add_help=False
    )
    sub.add_parser("image", help="build the Kyklos image with buildah (build)", add_help=False)
    sub.add_parser("proxy", help="the serving sidecar (metrics, request logs)", add_help=False)
    from kyklos.rolloutctl import add_parsers

    add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kyklos` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    # sandbox and worker own their argument parsing.
    if args_list and args_list[0] == "sandbox":
        from kyklos.sandbox.cli import main as sandbox_main

        return sandbox_main(args_list[1:])
    if args_list and args_list[0] == "worker":
        from kyklos.worker.cli import main as worker_main

        return worker_main(args_list[1:])
    if args_list and args_list[0] == "image":
        from kyklos.image import main as image_main

        return image_main(args_list[1:])
    if args_list and args_list[0] == "proxy":
        from kyklos.serving.proxy import main as proxy_main

        return proxy_main(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command == "version":
        print(f"kyklos {__version__}")
        return 0
    if args.command == "crds":
        from kyklos.api.crd import main_crds

        return main_crds(args.output_dir, args.check)
    if args.command == "run":
        return _run(args)
    if args.command in ("rollout", "traffic"):
        from kyklos import rolloutctl

        return (
            rolloutctl.rollout_main(args)
            if args.command == "rollout"
            else (rolloutctl.traffic_main(args))
        )
    parser.print_help()
    return 2


def _run(args: argparse.Namespace) -> int:
    from kyklos.controllers import config
    from kyklos.controllers.operator import RunOptions, listen_problem, run

    try:
        cfg = config.OperatorConfig.from_env(
            overrides={
                "worker_image": args.worker_image,
                "artifacts_uri": args.artifacts_uri,
                "artifacts_secret": args.artifacts_secret,
                "worker_service_account": args.worker_service_account,
                "worker_resources": args.worker_resources,
                "worker_deadline_seconds": args.worker_deadline,
                "executor_workers": args.executor_workers,
                "log_level": args.log_level and args.log_level.lower(),
                "log_format": args.log_format and args.log_format.lower(),
                "mlflow_tracking_uri": args.mlflow_tracking_uri,
            }
        )
    except config.ConfigError as exc:
        print(f"kyklos run: {exc}", file=sys.stderr)
        return 2
    problem = kubeconfig_problem(args.kubeconfig, os.environ)
    if problem:
        print(f"kyklos run: {problem}", file=sys.stderr)
        return 2
    options = RunOptions(
        namespaces=tuple(args.namespace),
        all_namespaces=not args.namespace,
        metrics_port=args.metrics_port,
        liveness=args.liveness or None,
        standalone=args.standalone,
        peering=args.peering,
        kubeconfig=args.kubeconfig,
    )
    problem = listen_problem(options)
    if problem:
        print(f"kyklos run: {problem}", file=sys.stderr)
        return 2
    return run(options, cfg)


def kubeconfig_problem(explicit: str | None, environ: Mapping[str, str]) -> str | None:
    """Why ``kyklos run`` can have no credentials, or None when it may have some.

    Without this check a missing file surfaces as the in-cluster fallback's "Service
    host/port is not set", which names neither the file nor the fix.
    """
    if explicit:
        if Path(explicit).expanduser().is_file():
            return None
        return f"--kubeconfig {explicit}: no such file"
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return None  # in a pod: the in-cluster credentials
    listed = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        if any(Path(p).expanduser().is_file() for p in listed):
            return None
        return (
            f"$KUBECONFIG={environ['KUBECONFIG']} names no existing file, and this is not a pod "
            "(no in-cluster credentials); point it at a kubeconfig or pass --kubeconfig PATH"
        )
    home = environ.get("HOME")
    default = (Path(home) if home else Path.home()) / ".kube" / "config"
    if default.is_file():
        return None
    return (
        f"no kubeconfig: $KUBECONFIG is unset, {default} does not exist, and this is not a pod "
        "(no in-cluster credentials); pass --kubeconfig PATH (make run starts a local sandbox)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
