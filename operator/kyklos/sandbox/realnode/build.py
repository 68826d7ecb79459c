"""Build the real node's tools into the cache, beside the control plane, and check the host.

Three Go modules under ``hack/node/`` pin them (hack/node/README.md): ``hack/node`` itself
(kubelet and kube-proxy from ``k8s.io/kubernetes``, its require blocks equal to
``hack/controlplane``'s so the Go build cache is shared), ``hack/node/containerd``
(containerd v2, its runc shim and ``ctr``) and ``hack/node/coredns`` (CoreDNS with the plugins
the cluster DNS uses). The pause binary is compiled from the Kubernetes module's own
``build/pause/linux/pause.c`` (static) and packaged as an OCI image archive by ``pause.py``.
Everything lands in ``<cache>/node/<kubernetes version>/`` with a fingerprint stamp, built
into a staging directory renamed into place, under a file lock, like the control plane.

runc, the CNI plugins, iptables and conntrack come from Debian packages; ``missing_packages``
names the ones that are absent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from kyklos.sandbox.build import (
    BuildError,
    BuiltBinaries,
    _last_error_line,
    build_flags,
    cache_root,
    kubernetes_version,
)

Progress = Callable[[str], None]

KUBE_TARGETS = ("k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy")
CONTAINERD_TARGETS = (
    "github.com/containerd/containerd/v2/cmd/containerd",
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
    "github.com/containerd/containerd/v2/cmd/ctr",
)
# Graph drivers this machine does not have; containerd's own build documents these tags.
CONTAINERD_TAGS = "no_btrfs no_devmapper no_zfs"
BINARIES = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "coredns",
    "pause",
)
STAMP = "build-info.json"
COLD_BUILD_HINT = "about 3 minutes on 2 cores after the control plane's build, seconds when cached"
PAUSE_SOURCE = "build/pause/linux/pause.c"
PAUSE_TAG = "3.10.2"

# Debian package -> a file it installs that the real node uses.
PACKAGES = {
    "runc": ("/usr/sbin/runc", "/usr/bin/runc"),
    "containernetworking-plugins": ("/usr/lib/cni/bridge", "/opt/cni/bin/bridge"),
    "iptables": ("/usr/sbin/iptables", "/sbin/iptables"),
    "conntrack": ("/usr/sbin/conntrack", "/sbin/conntrack"),
    "iproute2": ("/usr/sbin/ip", "/sbin/ip", "/bin/ip"),
    "libc6-dev": ("/usr/lib/x86_64-linux-gnu/libc.a", "/usr/lib/aarch64-linux-gnu/libc.a"),
    "gcc": ("/usr/bin/gcc",),
}


def missing_packages() -> list[str]:
    """Debian packages the real node needs that are not installed (none of their files exist)."""
    return [pkg for pkg, files in PACKAGES.items() if not any(os.path.exists(f) for f in files)]


def first_existing(paths: tuple[str, ...]) -> str:
    """The first of ``paths`` that exists (or the first one, for a message)."""
    return next((p for p in paths if os.path.exists(p)), paths[0])


def source_dir() -> Path:
    """``hack/node`` (``$KYKLOS_NODE_SRC`` overrides it)."""
    override = os.environ.get("KYKLOS_NODE_SRC")
    if override:
        return Path(override)
    # operator/kyklos/sandbox/realnode/build.py -> the repository root is four levels up.
    return Path(__file__).resolve().parents[4] / "hack" / "node"


@dataclass(frozen=True)
class NodeBinaries(BuiltBinaries):
    """Paths of the real node's built tools (``kubelet``, ``containerd``, ``pause`` ...)."""

    NAMES: ClassVar[tuple[str, ...]] = BINARIES


def pinned_node(src: Path | None = None, cache: Path | None = None) -> NodeBinaries:
    """Where the node's tools for the pinned Kubernetes release live (built or not)."""
    src = src or source_dir()
    try:
        text = (src / "go.mod").read_text()
    except OSError as exc:
        raise BuildError(f"cannot read {src / 'go.mod'}: {exc.strerror}") from None
    version = kubernetes_version(text)
    return NodeBinaries(version, (cache or cache_root()) / "node" / version)


def fingerprint(src: Path) -> str:
    """Hash of the three modules' files and the build flags."""
    digest = hashlib.sha256()
    for name in (
        "go.mod",
        "go.sum",
        "containerd/go.mod",
        "containerd/go.sum",
        "coredns/go.mod",
        "coredns/go.sum",
        "coredns/main.go",
    ):
        path = src / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"")
    digest.update(" ".join(build_flags("v", "")).encode())
    digest.update(CONTAINERD_TAGS.encode() + PAUSE_TAG.encode())
    return digest.hexdigest()


def ensure_node_built(progress: Progress | None = None, *, force: bool = False) -> NodeBinaries:
    """Build the real node's tools unless the cache has them; return their paths."""
    say: Progress = progress or (lambda _line: None)
    src = source_dir()
    node = pinned_node(src)
    wanted = fingerprint(src)

    def build(go: str) -> None:
        gcc = shutil.which("gcc")
        if gcc is None:
            raise BuildError("gcc is not on PATH (apt-get install gcc libc6-dev); it builds pause")
        _build(go, gcc, src, node, wanted, say)

    node.ensure(
        wanted,
        build,
        force=force,
        purpose="the real node's kubelet, kube-proxy, containerd and CoreDNS",
    )
    return node


def _go_build(
    go: str,
    cwd: Path,
    targets: tuple[str, ...],
    out: Path,
    flags: list[str],
    log_path: Path,
    say: Progress,
    label: str,
) -> float:
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": os.environ.get("GOFLAGS", "")}
    cmd = [go, "build", *flags, "-o", str(out) + "/", *targets]
    started = time.monotonic()
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(15.0):
            elapsed = int(time.monotonic() - started)
            say(f"  ... {label}: {elapsed // 60}m{elapsed % 60:02d}s")

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        with open(log_path, "a") as log:
            log.write("$ (cd " + str(cwd) + " && " + " ".join(cmd) + ")\n")
            log.flush()
            proc = subprocess.run(
                cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.PIPE, text=True
            )
            log.write(proc.stderr)
    finally:
        stop.set()
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise BuildError(
            f"building {label} failed (exit {proc.returncode}): "
            f"{_last_error_line(proc.stderr)} (full log: {log_path})"
        )
    say(f"built {label} in {elapsed:.0f}s")
    return elapsed


def _pause_source(go: str, src: Path) -> Path:
    """``build/pause/linux/pause.c`` of the pinned Kubernetes module (downloaded by Go)."""
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    proc = subprocess.run(
        [go, "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    directory = proc.stdout.strip()
    if proc.returncode != 0 or not directory:
        raise BuildError(f"cannot locate the k8s.io/kubernetes module: {proc.stderr.strip()}")
    source = Path(directory) / PAUSE_SOURCE
    if not source.exists():
        raise BuildError(f"the kubernetes module has no {PAUSE_SOURCE} ({directory})")
    return source


def _build(go: str, gcc: str, src: Path, node: NodeBinaries, wanted: str, say: Progress) -> None:
    staging = node.staging()
    log_path = node.directory.parent / f"{node.version}.build.log"
    log_path.write_text("")
    say(
        f"building the real node's tools for Kubernetes {node.version} into {node.directory} "
        f"({COLD_BUILD_HINT}); log: {log_path}"
    )
    build_date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    small = ["-trimpath", "-ldflags=-s -w"]
    times: dict[str, float] = {}
    try:
        times["kubelet+kube-proxy"] = _go_build(
            go,
            src,
            KUBE_TARGETS,
            staging,
            build_flags(node.version, build_date),
            log_path,
            say,
            "kubelet and kube-proxy",
        )
        times["containerd"] = _go_build(
            go,
            src / "containerd",
            CONTAINERD_TARGETS,
            staging,
            [*small, "-tags", CONTAINERD_TAGS],
            log_path,
            say,
            "containerd",
        )
        times["coredns"] = _go_build(
            go,
            src / "coredns",
            (".",),
            staging,
            small,
            log_path,
            say,
            "CoreDNS",
        )
        started = time.monotonic()
        source = _pause_source(go, src)
        proc = subprocess.run(
            [
                gcc,
                "-Os",
                "-Wall",
                "-static",
                f"-DVERSION=v{PAUSE_TAG}-kyklos",
                "-o",
                str(staging / "pause"),
                str(source),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BuildError(f"gcc could not build pause: {_last_error_line(proc.stderr)}")
        times["pause"] = time.monotonic() - started
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    stamp: dict[str, object] = {
        "fingerprint": wanted,
        "version": node.version,
        "builtAt": build_date,
        "seconds": {k: round(v) for k, v in times.items()},
    }
    node.install(staging, stamp, log_path)
    say(f"built the real node's tools in {sum(times.values()) / 60:.1f} min")
