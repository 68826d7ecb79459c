"""Build etcd and the Kubernetes control plane from the pinned Go module into a versioned cache.

The Go module in ``hack/controlplane/`` pins one Kubernetes release. ``ensure_built`` compiles
``etcd``, ``kube-apiserver``, ``kube-controller-manager`` and ``kube-scheduler`` from it once into
``<cache>/controlplane/<kubernetes version>/`` and is instant afterwards. Nothing prebuilt is
downloaded: only Go modules through the Go module proxy, by the Go toolchain itself.

The build goes to a staging directory that is renamed into place only when every binary is
there, so an interrupted build never leaves a half-populated cache; a file lock serialises
concurrent builds (CI's explicit build and a test session's on-demand one).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
BUILD_TARGETS = (
    "./etcd",
    "k8s.io/kubernetes/cmd/kube-apiserver",
    "k8s.io/kubernetes/cmd/kube-controller-manager",
    "k8s.io/kubernetes/cmd/kube-scheduler",
)
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
STAMP = "build-info.json"
COLD_BUILD_HINT = "about 13 minutes on 2 cores with a cold Go build cache, seconds when cached"

Progress = Callable[[str], None]


class BuildError(Exception):
    """The control plane could not be built; the message is one line naming the cause."""


@dataclass(frozen=True)
class BuiltBinaries:
    """Paths of a set of binaries built into one cache directory, with its build stamp."""

    version: str
    directory: Path
    #: The binaries the set consists of.
    NAMES: ClassVar[tuple[str, ...]] = ()

    def path(self, name: str) -> Path:
        """Return the path of one binary of the set."""
        if name not in self.NAMES:
            raise KeyError(name)
        return self.directory / name

    def ensure(
        self,
        wanted: str,
        build: Callable[[str], None],
        *,
        force: bool = False,
        purpose: str,
    ) -> None:
        """Build the set unless it is present with fingerprint ``wanted`` (or ``force``).

        ``build(go)`` gets the Go toolchain's path and runs under the set's file lock, once:
        a process that waited for the lock finds the set another one built meanwhile.
        ``purpose`` completes the message when ``go`` is missing ("needed once to build ...").
        """
        if self.present(wanted) and not force:
            return
        go = shutil.which("go")
        if go is None:
            raise BuildError(
                "the Go toolchain (`go`, 1.26 or newer) is not on PATH; it is needed once to "
                f"build {purpose} into {self.directory}"
            )
        with _locked(self.directory.parent / f"{self.version}.lock"):
            if self.present(wanted) and not force:  # another process built it meanwhile
                return
            build(go)

    def staging(self) -> Path:
        """A fresh, empty directory to build into, beside the set's (``install`` moves it)."""
        staging = self.directory.parent / f".{self.version}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        return staging

    def install(self, staging: Path, stamp: dict[str, object], log_path: Path) -> None:
        """Check every binary is in ``staging``, stamp it and rename it into place."""
        missing = [name for name in self.NAMES if not (staging / name).exists()]
        if missing:
            shutil.rmtree(staging, ignore_errors=True)
            raise BuildError(f"the build produced no {', '.join(missing)} (full log: {log_path})")
        (staging / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if self.directory.exists():
            shutil.rmtree(self.directory)
        staging.rename(self.directory)

    def present(self, fingerprint: str | None = None) -> bool:
        """True when every binary exists (and, given a fingerprint, was built from it)."""
        if not all(os.access(self.directory / name, os.X_OK) for name in self.NAMES):
            return False
        if fingerprint is None:
            return True
        try:
            stamp = json.loads((self.directory / STAMP).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(stamp, dict) and stamp.get("fingerprint") == fingerprint


@dataclass(frozen=True)
class ControlPlaneBinaries(BuiltBinaries):
    """Paths of the four control-plane binaries of one Kubernetes version."""

    NAMES: ClassVar[tuple[str, ...]] = BINARIES


def source_dir() -> Path:
    """Return the Go module directory (``$KYKLOS_CONTROLPLANE_SRC`` or the repository's)."""
    override = os.environ.get("KYKLOS_CONTROLPLANE_SRC")
    if override:
        return Path(override)
    # operator/kyklos/sandbox/build.py -> repository root is three levels above the package.
    return Path(__file__).resolve().parents[3] / "hack" / "controlplane"


def cache_root() -> Path:
    """Return the cache root (``$KYKLOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/kyklos``)."""
    override = os.environ.get("KYKLOS_CACHE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "kyklos"


_REQUIRE_RE = re.compile(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+\S*)", re.M)


def kubernetes_version(go_mod_text: str) -> str:
    """Return the pinned ``k8s.io/kubernetes`` version from a go.mod text."""
    match = _REQUIRE_RE.search(go_mod_text)
    if match is None:
        raise BuildError("go.mod does not require k8s.io/kubernetes; cannot tell which release")
    return match.group(1)


def pinned_binaries(src: Path | None = None, cache: Path | None = None) -> ControlPlaneBinaries:
    """Return where the binaries for the pinned release live (built or not)."""
    src = src or source_dir()
    go_mod = src / "go.mod"
    try:
        text = go_mod.read_text()
    except OSError as exc:
        raise BuildError(f"cannot read {go_mod}: {exc.strerror}") from None
    version = kubernetes_version(text)
    return ControlPlaneBinaries(version, (cache or cache_root()) / "controlplane" / version)


def build_flags(version: str, build_date: str) -> list[str]:
    """``go build`` flags: small binaries, and the release version they report.

    Kubernetes' own release build stamps the version with ``-X`` (hack/lib/version.sh); without
    it ``kubectl version`` and Helm's ``kubeVersion`` checks see ``v0.0.0-master``. ``-X`` only
    changes the link step, so Go's compile cache is shared with an unstamped build.
    """
    match = re.match(r"v(\d+)\.(\d+)", version)
    major, minor = match.groups() if match else ("", "")
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": build_date,
    }
    stamps = [
        f"-X {pkg}.{key}={value}" for pkg in VERSION_PACKAGES for key, value in values.items()
    ]
    return ["-trimpath", "-ldflags=" + " ".join(["-s", "-w", *stamps])]


def fingerprint(src: Path) -> str:
    """Hash of everything that decides what the build produces (module files, flags)."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "etcd/main.go"):
        path = src / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"")
    digest.update(" ".join(build_flags("v", "")).encode())
    return digest.hexdigest()


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _count_packages(go: str, src: Path, env: dict[str, str]) -> int | None:
    """Number of packages the build needs (for a progress percentage), or None if unknown."""
    try:
        out = subprocess.run(
            [go, "list", "-deps", *BUILD_TARGETS],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return len(out.stdout.split())


def _last_error_line(log_text: str) -> str:
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        # Compiler errors look like "path/file.go:12:3: message"; module errors mention "go:".
        if re.search(r"\.go:\d+|^go: |error|cannot|missing|undefined", line):
            return line
    return lines[-1] if lines else "no output"


def ensure_built(progress: Progress | None = None, *, force: bool = False) -> ControlPlaneBinaries:
    """Build the pinned control plane unless the cache already has it; return the binaries."""
    say: Progress = progress or (lambda _line: None)
    src = source_dir()
    binaries = pinned_binaries(src)
    wanted = fingerprint(src)
    binaries.ensure(
        wanted,
        lambda go: _build(go, src, binaries, wanted, say),
        force=force,
        purpose=f"Kubernetes {binaries.version}",
    )
    return binaries


def _build(go: str, src: Path, binaries: ControlPlaneBinaries, wanted: str, say: Progress) -> None:
    staging = binaries.staging()
    log_path = binaries.directory.parent / f"{binaries.version}.build.log"
    # GOTOOLCHAIN=local: never let `go` download a different toolchain behind our back.
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": os.environ.get("GOFLAGS", "")}
    say(
        f"building Kubernetes {binaries.version} control plane from Go modules into "
        f"{binaries.directory} ({COLD_BUILD_HINT}); log: {log_path}"
    )
    started = time.monotonic()
    total = _count_packages(go, src, env)
    compiled = 0
    lock = threading.Lock()

    build_date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    flags = build_flags(binaries.version, build_date)
    cmd = [go, "build", "-v", *flags, "-o", str(staging) + "/", *BUILD_TARGETS]
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=src, env=env, stdout=log, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        stop = threading.Event()

        def report() -> None:
            while not stop.wait(15.0):
                with lock:
                    done = compiled
                elapsed = int(time.monotonic() - started)
                if done == 0:
                    state = "using Go's build cache and linking"
                elif total:
                    state = f"{done} of at most {total} packages compiled"
                else:
                    state = f"{done} packages compiled"
                say(f"  ... {elapsed // 60}m{elapsed % 60:02d}s, {state}")

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        captured: list[str] = []
        try:
            for line in proc.stderr:
                log.write(line)
                captured.append(line)
                if len(captured) > 400:
                    del captured[:200]
                # `go build -v` names each package as it is compiled (cached ones are skipped).
                if re.match(r"^[\w.\-/]+$", line.strip()):
                    with lock:
                        compiled += 1
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            stop.set()
        elapsed = time.monotonic() - started
        log.write(f"exit {code} after {elapsed:.0f}s\n")
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        detail = _last_error_line("".join(captured))
        raise BuildError(f"go build failed (exit {code}): {detail} (full log: {log_path})")
    stamp: dict[str, object] = {
        "fingerprint": wanted,
        "version": binaries.version,
        "builtAt": build_date,
        "seconds": round(elapsed),
    }
    binaries.install(staging, stamp, log_path)
    say(f"built Kubernetes {binaries.version} control plane in {elapsed / 60:.1f} min")


def main() -> int:
    """Build (for ``python -m kyklos.sandbox.build``)."""
    try:
        built = ensure_built(lambda line: print(line, file=sys.stderr, flush=True))
    except BuildError as exc:
        print(f"kyklos sandbox build: {exc}", file=sys.stderr)
        return 1
    print(built.directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
