"""The Dockerfile's essentials, checked statically (no Docker engine on CI machines)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "cargo", "rustc", "git")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Split a Dockerfile into global ARG defaults and stages of (KEYWORD, argument)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0]
            )
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def test_is_multi_stage_on_one_pinned_slim_python_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "build and runtime stages expected"
    for stage in stages:
        image, _, tag = stage.base.rpartition(":")
        assert image in ("python", "docker.io/library/python"), stage.base
        assert re.fullmatch(r"3\.\d+\.\d+-slim(-\w+)?", tag), (
            f"base tag not pinned to a patch release: {stage.base}"
        )
    assert len({s.base for s in stages}) == 1, (
        "the venv's interpreter link needs the same base in both stages"
    )


def test_final_stage_runs_kyklos_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.all("USER")
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER must be a numeric non-root UID, got {users[-1]}"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["kyklos"], 'exec-form ENTRYPOINT ["kyklos"] expected'


def test_image_uid_matches_the_chart_security_context(stages: list[Stage]) -> None:
    uid = int(stages[-1].all("USER")[-1].partition(":")[0])
    values = yaml.safe_load((REPO / "charts" / "kyklos" / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == uid
    assert values["podSecurityContext"]["runAsUser"] == uid


def test_image_uid_is_the_uid_of_every_pod_kyklos_builds(stages: list[Stage]) -> None:
    """Worker and model-server pods run the same image: one UID, so files they share on a
    claim (profiles, models) are readable by each other and by the operator's image user."""
    from kyklos.logic.podspec import WORKER_UID
    from kyklos.logic.rollout import RUN_AS_USER

    uid = int(stages[-1].all("USER")[-1].partition(":")[0])
    assert uid == WORKER_UID
    assert uid == RUN_AS_USER


def test_final_stage_has_no_build_tools_and_copies_only_the_built_environment(
    stages: list[Stage],
) -> None:
    final = stages[-1]
    for command in final.all("RUN"):
        words = set(shlex.split(command.replace("&&", " ")))
        assert not words & set(BUILD_TOOLS), f"build tools in the final stage: {command}"
        assert "pip" not in command, (
            f"packages are installed in the build stage, not here: {command}"
        )
    copies = final.all("COPY")
    assert copies and all(c.startswith("--from=") for c in copies), (
        f"final stage copies from the context: {copies}"
    )
    build_names = {s.name for s in stages[:-1]}
    assert {c.split()[0].removeprefix("--from=") for c in copies} <= build_names


def test_read_only_root_filesystem_is_supported(stages: list[Stage]) -> None:
    env = " ".join(stages[-1].all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "TMPDIR=/tmp" in env and "HOME=/tmp" in env


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
            result = not negate
    return result


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        src
        for stage in stages
        for copy in stage.all("COPY")
        if not copy.startswith("--from=")
        for src in copy.split()[:-1]
    ]
    assert sources, "the build stage copies nothing from the context"
    for src in sources:
        assert not _ignored(src.rstrip("/"), patterns), (
            f".dockerignore drops {src}, which the build copies"
        )
    for unwanted in (".git", ".venv", "tests", ".tools", "hack/controlplane"):
        assert _ignored(unwanted, patterns), f".dockerignore lets {unwanted} into the build context"
