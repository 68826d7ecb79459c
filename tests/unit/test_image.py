"""`kyklos image build`: the chart's default name, the Debian mirror, one-line refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kyklos import image

REPO = Path(__file__).resolve().parents[2]


def test_the_default_name_is_the_charts_default_image() -> None:
    assert image.chart_image(REPO) == "ghcr.io/kyklos/kyklos:0.1.0"


def test_the_mirror_comes_from_deb822_sources_and_skips_security(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert image.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_the_mirror_from_a_one_line_source_else_the_default(tmp_path: Path) -> None:
    assert image.debian_mirror(tmp_path) == image.DEFAULT_MIRROR
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://m.example/debian bookworm main\n"
    )
    assert image.debian_mirror(tmp_path) == "http://m.example/debian"


def test_buildah_sizes_are_parsed() -> None:
    assert image._parse_size("844 MB") == 844_000_000
    assert image._parse_size("1.2 GB") == 1_200_000_000
    assert image._parse_size("?") == 0


def test_a_base_that_is_not_local_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(image, "preflight", lambda need_debootstrap: None)
    monkeypatch.setattr(image, "image_exists", lambda name: False)
    assert image.main(["build", "--base", "python:3.13-slim"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "kyklos image: --base python:3.13-slim is not in local storage (nothing is pulled); "
        "omit --base to make the Debian base here"
    ]


def test_not_root_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert image.main(["build"]) == 2
    assert capsys.readouterr().err.strip() == (
        "kyklos image: kyklos image build needs root (buildah with overlay storage)"
    )
