"""``kyklos sandbox build|serve`` (also ``python -m kyklos.sandbox.cli``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kyklos.sandbox.build import BuildError, ensure_built
from kyklos.sandbox.serve import ServeOptions, say, serve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kyklos sandbox",
        description="A local Kubernetes control plane built from the official Go modules, "
        "with the Kyklos node agent standing in for the kubelet.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build etcd and the control plane into the cache")
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    build.add_argument(
        "--node",
        choices=("agent", "real"),
        default="agent",
        help="also build the real node's kubelet, kube-proxy, containerd and CoreDNS (real)",
    )

    run = sub.add_parser("serve", help="start the sandbox and print its kubeconfig path")
    run.add_argument(
        "--port", type=int, default=0, help="API server port on 127.0.0.1 (0: pick a free one)"
    )
    run.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path("sandbox.kubeconfig"),
        help="where to write the admin kubeconfig (default ./sandbox.kubeconfig)",
    )
    run.add_argument(
        "--kubelet-policy", type=Path, help="kubelet policy YAML (default: the built-in policy)"
    )
    run.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    run.add_argument(
        "--data-dir",
        type=Path,
        help="keep all state here (default: a temporary dir removed on exit)",
    )
    run.add_argument(
        "--no-node-agent",
        action="store_true",
        help="control plane only, no nodes (for developing the control plane itself)",
    )
    run.add_argument(
        "--node",
        choices=("agent", "real"),
        default="agent",
        help="agent: the process node agent (default, fast); real: one real node on this "
        "machine (kubelet, containerd, runc, kube-proxy, CoreDNS; needs root)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds to wait for the cluster to become ready (default 180)",
    )
    _add_restart_parser(sub)
    return parser


def _add_restart_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kyklos.sandbox.restart import COMPONENTS, SIGNALS

    restart = sub.add_parser(
        "restart",
        help="kill one control-plane component of a running sandbox and start it again "
        "on the same data (the running serve does it)",
    )
    restart.add_argument("component", choices=COMPONENTS)
    restart.add_argument(
        "--data-dir", type=Path, required=True, help="the --data-dir of the running serve"
    )
    restart.add_argument(
        "--signal", choices=sorted(SIGNALS), default="KILL", help="how to stop it (default KILL)"
    )
    restart.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for it (default 180)"
    )


def _restart(args: argparse.Namespace) -> int:
    from kyklos.sandbox.restart import RestartError, request_restart

    try:
        result = request_restart(
            args.data_dir, args.component, kill_signal=args.signal, timeout=args.timeout
        )
    except RestartError as exc:
        print(f"kyklos sandbox restart: {exc}", file=sys.stderr)
        return 1
    if not result.ok:
        print(f"kyklos sandbox restart: {result.message}", file=sys.stderr)
        return 1
    say(f"{args.component}: {result.message} after {result.down_seconds:.1f}s")
    return 0


def main(argv: list[str]) -> int:
    """Run ``kyklos sandbox`` with ``argv`` (the words after ``sandbox``); return the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "build":
        try:
            built = ensure_built(say, force=args.force)
        except BuildError as exc:
            print(f"kyklos sandbox build: {exc}", file=sys.stderr)
            return 1
        say(f"control plane {built.version} is in {built.directory}")
        if args.node == "real":
            from kyklos.sandbox.realnode.build import ensure_node_built

            try:
                node = ensure_node_built(say, force=args.force)
            except BuildError as exc:
                print(f"kyklos sandbox build: {exc}", file=sys.stderr)
                return 1
            say(f"real node tools {node.version} are in {node.directory}")
        return 0
    if args.command == "restart":
        return _restart(args)
    if args.port < 0 or args.port > 65535:
        print(f"kyklos sandbox serve: --port {args.port} is not a TCP port", file=sys.stderr)
        return 2
    if args.nodes < 0:
        print(f"kyklos sandbox serve: --nodes {args.nodes} must be >= 0", file=sys.stderr)
        return 2
    return serve(
        ServeOptions(
            port=args.port,
            kubeconfig=args.kubeconfig,
            kubelet_policy=args.kubelet_policy,
            nodes=args.nodes,
            data_dir=args.data_dir,
            node_agent=not args.no_node_agent,
            ready_timeout=args.timeout,
            node=args.node,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
