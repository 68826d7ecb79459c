"""The control-plane build: keyed by the pinned release, instant when cached, one-line errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from kyklos.sandbox import build
from kyklos.sandbox.build import (
    BINARIES,
    STAMP,
    BuildError,
    build_flags,
    ensure_built,
    fingerprint,
    kubernetes_version,
)

REPO_GO_MOD = Path(build.__file__).resolve().parents[3] / "hack" / "controlplane" / "go.mod"


def test_version_is_read_from_the_require_block() -> None:
    text = "module x\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.7.0\n\tk8s.io/kubernetes v1.37.2\n)\n"
    assert kubernetes_version(text) == "v1.37.2"


def test_version_from_a_single_line_require() -> None:
    assert kubernetes_version("module x\nrequire k8s.io/kubernetes v1.36.0\n") == "v1.36.0"


def test_replace_lines_for_staging_modules_do_not_confuse_the_version() -> None:
    text = "require k8s.io/kubernetes v1.37.2\nreplace k8s.io/api => k8s.io/api v0.37.2\n"
    assert kubernetes_version(text) == "v1.37.2"


def test_go_mod_without_kubernetes_is_a_clear_error() -> None:
    with pytest.raises(BuildError, match=r"does not require k8s\.io/kubernetes"):
        kubernetes_version("module x\nrequire go.etcd.io/etcd/server/v3 v3.7.0\n")


def test_repository_module_pins_a_kubernetes_release() -> None:
    assert kubernetes_version(REPO_GO_MOD.read_text()).startswith("v1.")


def _module(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "go.mod").write_text("module x\nrequire k8s.io/kubernetes v1.99.0\n")
    return src


def _fake_go(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    go = bin_dir / "go"
    go.write_text("#!/bin/sh\n" + script)
    go.chmod(go.stat().st_mode | stat.S_IXUSR)


def test_cached_binaries_are_used_without_running_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KYKLOS_CONTROLPLANE_SRC", str(_module(tmp_path)))
    monkeypatch.setenv("KYKLOS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no `go` anywhere
    target = tmp_path / "cache" / "controlplane" / "v1.99.0"
    target.mkdir(parents=True)
    for name in BINARIES:
        (target / name).write_text("")
        (target / name).chmod(0o755)
    (target / STAMP).write_text(json.dumps({"fingerprint": fingerprint(tmp_path / "src")}))
    lines: list[str] = []
    built = ensure_built(lines.append)
    assert built.directory == target
    assert built.version == "v1.99.0"
    assert lines == []  # nothing to say: no build happened


def test_missing_go_toolchain_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYKLOS_CONTROLPLANE_SRC", str(_module(tmp_path)))
    monkeypatch.setenv("KYKLOS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError, match=r"Go toolchain .* not on PATH"):
        ensure_built()


def test_failed_compilation_is_one_line_with_the_compiler_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KYKLOS_CONTROLPLANE_SRC", str(_module(tmp_path)))
    monkeypatch.setenv("KYKLOS_CACHE_DIR", str(tmp_path / "cache"))
    _fake_go(
        tmp_path / "bin",
        'if [ "$1" = list ]; then echo a; echo b; exit 0; fi\n'
        "echo 'k8s.io/foo' >&2\n"
        "echo 'etcd/main.go:7:2: undefined: etcdmain.Nope' >&2\n"
        "exit 1\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BuildError) as info:
        ensure_built()
    message = str(info.value)
    assert "\n" not in message
    assert "undefined: etcdmain.Nope" in message
    assert "exit 1" in message
    cache = tmp_path / "cache" / "controlplane"
    # No half-built version directory is left to be mistaken for a finished build.
    assert not (cache / "v1.99.0").exists()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []


def test_successful_build_is_moved_into_the_versioned_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KYKLOS_CONTROLPLANE_SRC", str(_module(tmp_path)))
    monkeypatch.setenv("KYKLOS_CACHE_DIR", str(tmp_path / "cache"))
    # A stand-in toolchain that "compiles" by writing the four executables to the -o dir.
    _fake_go(
        tmp_path / "bin",
        'if [ "$1" = list ]; then echo a; exit 0; fi\n'
        'while [ "$1" != "-o" ]; do shift; done; out="$2"\n'
        "for b in etcd kube-apiserver kube-controller-manager kube-scheduler; do\n"
        '  printf "#!/bin/sh\\n" > "$out/$b"; chmod +x "$out/$b"; done\n'
        "echo k8s.io/kubernetes/cmd/kube-apiserver >&2\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    lines: list[str] = []
    built = ensure_built(lines.append)
    assert built.present()
    assert built.directory == tmp_path / "cache" / "controlplane" / "v1.99.0"
    assert "building Kubernetes v1.99.0" in lines[0]
    assert "minutes" in lines[0]  # says roughly how long a cold build takes
    assert lines[-1].startswith("built Kubernetes v1.99.0")


def test_binaries_from_other_module_files_are_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _module(tmp_path)
    monkeypatch.setenv("KYKLOS_CONTROLPLANE_SRC", str(src))
    monkeypatch.setenv("KYKLOS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    target = tmp_path / "cache" / "controlplane" / "v1.99.0"
    target.mkdir(parents=True)
    for name in BINARIES:
        (target / name).write_text("")
        (target / name).chmod(0o755)
    (target / STAMP).write_text(json.dumps({"fingerprint": fingerprint(src)}))
    (src / "go.sum").write_text("changed\n")  # e.g. a dependency bump
    with pytest.raises(BuildError, match="Go toolchain"):  # it wants to build again
        ensure_built()


def test_binaries_report_the_pinned_release_version() -> None:
    flags = build_flags("v1.37.2", "2026-11-23T00:00:00Z")
    (ldflags,) = [f for f in flags if f.startswith("-ldflags=")]
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in ldflags
    assert "-X k8s.io/client-go/pkg/version.gitVersion=v1.37.2" in ldflags
    assert "-X k8s.io/component-base/version.gitMajor=1" in ldflags
    assert "-X k8s.io/component-base/version.gitMinor=37" in ldflags
    assert "-trimpath" in flags
