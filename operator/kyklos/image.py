"""``kyklos image build [--base IMAGE] [--load]``: the Kyklos image from the repository's Dockerfile.

``kyklos image web [--load]`` builds ``localhost/kyklos/web:bookworm``, a small web server on
the same Debian base, for pods that need a long-running server image on a machine no registry
reaches (the conformance suite on the real node).

No Docker engine: buildah builds the ``Dockerfile`` unchanged (overlay storage, chroot
isolation, ``--pull never``), its storage kept in the Kyklos cache
(``<cache>/image/storage``), not in the host's ``/var/lib/containers``. Without ``--base`` the
Python base is made here: ``debootstrap --variant=minbase`` of Debian bookworm with python3 from
the machine's configured Debian mirror, committed with ``buildah from scratch`` as
``localhost/kyklos/debian-base:bookworm`` (once; cached). pip inside the build trusts the host's
CAs through a read-only mount of the host's bundle and a mounted ``pip.conf``; neither is baked
into the image. ``--load`` puts the image into the running real node's containerd
(``kyklos sandbox serve --node real``) under the chart's default image name.

Bad input is one line on stderr and exit 2: not root, buildah/debootstrap missing, a ``--base``
that is not in local storage, ``--load`` without a running real node.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kyklos.sandbox.build import cache_root

BASE_IMAGE = "localhost/kyklos/debian-base:bookworm"
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageError(Exception):
    """The image cannot be built or loaded; one line naming the cause and what to do."""


def repo_root() -> Path:
    """The repository (the Dockerfile's build context): operator/kyklos/image.py -> ../../."""
    return Path(__file__).resolve().parents[2]


def chart_image(root: Path) -> str:
    """The chart's default image: ``image.repository`` with the chart's ``appVersion`` tag."""
    import yaml

    values = yaml.safe_load((root / "charts" / "kyklos" / "values.yaml").read_text())
    chart = yaml.safe_load((root / "charts" / "kyklos" / "Chart.yaml").read_text())
    image = values.get("image", {})
    tag = image.get("tag") or chart.get("appVersion") or chart.get("version")
    return f"{image['repository']}:{tag}"


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The machine's configured Debian mirror (deb822 or one-line sources), else deb.debian.org."""
    texts = []
    for path in [sources_dir / "sources.list", *sorted(sources_dir.glob("sources.list.d/*"))]:
        if path.suffix in (".list", ".sources") or path.name == "sources.list":
            with contextlib.suppress(OSError):
                texts.append(path.read_text())
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            match = re.match(r"^URIs:\s*(\S+)", line) or re.match(
                r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", line
            )
            if match and "security" not in match.group(1):
                return match.group(1)
    return DEFAULT_MIRROR


def _storage_args() -> list[str]:
    base = cache_root() / "image"
    return [
        "--root",
        str(base / "storage"),
        "--runroot",
        str(base / "run"),
        "--storage-driver",
        "overlay",
    ]


def buildah(*args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run buildah on the Kyklos cache's storage."""
    return subprocess.run(
        ["buildah", *_storage_args(), *args],
        capture_output=capture,
        text=True,
        check=False,
    )


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit {proc.returncode}"


def image_exists(name: str) -> bool:
    """True when ``name`` is in the local buildah storage."""
    return buildah("inspect", "--type", "image", name).returncode == 0


def preflight(need_debootstrap: bool) -> None:
    """Root, buildah and (for the base) debootstrap; raise ImageError naming what to do."""
    if os.geteuid() != 0:
        raise ImageError("kyklos image build needs root (buildah with overlay storage)")
    missing = [tool for tool in ("buildah",) if shutil.which(tool) is None]
    if need_debootstrap and shutil.which("debootstrap") is None:
        missing.append("debootstrap")
    if missing:
        raise ImageError(
            f"missing Debian packages {' '.join(missing)}: apt-get install -y {' '.join(missing)}"
        )
    if "overlay" not in Path("/proc/filesystems").read_text().split():
        raise ImageError("overlayfs is not available in this kernel (load the overlay module)")


def _unmount_under(root: Path) -> None:
    prefix = str(root) + "/"
    points = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _make_image(source: str, image: str, steps: Callable[[str], list[tuple[str, ...]]]) -> None:
    """``buildah from source``, then ``steps(container)`` (buildah argv each), commit as ``image``.

    Nothing is pulled; the working container is removed whether the steps succeed or not.
    """
    container = (
        buildah("from", source) if source == "scratch" else buildah("from", "--pull=never", source)
    )
    if container.returncode != 0:
        raise ImageError(f"buildah from {source} failed: {_last_line(container)}")
    name = container.stdout.strip()
    try:
        for step in [*steps(name), ("commit", "--rm", name, image)]:
            proc = buildah(*step)
            if proc.returncode != 0:
                raise ImageError(f"buildah {step[0]} failed: {_last_line(proc)}")
    except ImageError:
        buildah("rm", name)
        raise


def build_base(say: Callable[[str], None]) -> str:
    """Make the Debian + python3 base with debootstrap and buildah (once; cached)."""
    if image_exists(BASE_IMAGE):
        return BASE_IMAGE
    work = cache_root() / "image"
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=work) as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"debootstrap {DEBIAN_SUITE} (minbase + python3) from {mirror}")
        try:
            proc = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={DEBIAN_PACKAGES}",
                    DEBIAN_SUITE,
                    str(rootfs),
                    mirror,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise ImageError(f"debootstrap failed: {_last_line(proc)}")
            # apt lists and caches are not part of an image.
            for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
                shutil.rmtree(rootfs / junk, ignore_errors=True)
            _make_image(
                "scratch",
                BASE_IMAGE,
                lambda name: [
                    ("copy", name, str(rootfs), "/"),
                    (
                        "config",
                        "--env",
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "--cmd",
                        "python3",
                        name,
                    ),
                ],
            )
        finally:
            _unmount_under(Path(tmp))
    say(f"base image {BASE_IMAGE} built in {time.monotonic() - started:.0f}s")
    return BASE_IMAGE


# A long-running web server on the Debian base, for pods that only need to run and serve
# (the conformance suite's server pod, where nginx cannot be pulled): ``python3 -m http.server``
# on port 80 that exits on SIGTERM (as PID 1 Python would otherwise ignore it until SIGKILL).
WEB_IMAGE = "localhost/kyklos/web:bookworm"
WEB_SERVER = (
    "import http.server, signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "http.server.ThreadingHTTPServer(('', 80), http.server.SimpleHTTPRequestHandler)"
    ".serve_forever()\n"
)
WEB_BASE_LABEL = "io.kyklos.base-image-id"
# The containerd label on an image `load_into_real_node` imported: the buildah image id.
LOADED_ID_LABEL = "io.kyklos.image-id"


def _image_id(name: str) -> str:
    proc = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", name)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def build_web(say: Callable[[str], None]) -> str:
    """``WEB_IMAGE`` from the Debian base (made first when missing); cached per base image.

    Only image configuration on top of the base (no new layer, nothing fetched): seconds.
    """
    base = build_base(say)
    base_id = _image_id(base)
    label = buildah(
        "inspect",
        "--type",
        "image",
        "--format",
        f'{{{{index .OCIv1.Config.Labels "{WEB_BASE_LABEL}"}}}}',
        WEB_IMAGE,
    )
    if label.returncode == 0 and base_id and label.stdout.strip() == base_id:
        return WEB_IMAGE
    _make_image(
        base,
        WEB_IMAGE,
        lambda name: [
            (
                "config",
                "--cmd",
                json.dumps(["python3", "-c", WEB_SERVER]),
                "--port",
                "80/tcp",
                "--label",
                f"{WEB_BASE_LABEL}={base_id}",
                name,
            )
        ],
    )
    say(f"built {WEB_IMAGE} on {base}")
    return WEB_IMAGE


BUILD_STAGE_TAG = "localhost/kyklos/kyklos-build-stage:cache"


def build_image(base: str, tag: str, say: Callable[[str], None]) -> float:
    """Build the repository's Dockerfile on ``base`` as ``tag``; return the seconds it took.

    The Dockerfile's ``build`` stage is tagged too (``BUILD_STAGE_TAG``; a cache hit, no
    second build): then only earlier builds' layers are dangling, and ``_prune`` removes them
    while both stages' layer caches stay (without it every rebuild kept ~0.8 GB more).
    """
    root = repo_root()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kyklos-image-") as tmp:
        pip_conf = Path(tmp) / "pip.conf"
        pip_conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n")
        common = [
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",  # one word: buildah's --pull takes an optional value
            "--layers",
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "-f",
            str(root / "Dockerfile"),
        ]
        if HOST_CA_BUNDLE.exists():
            common += [
                "-v",
                f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
                "-v",
                f"{pip_conf}:/etc/pip.conf:ro",
            ]
        say(f"buildah bud {tag} on {base} (log follows)")
        for extra in (["--target", "build", "-t", BUILD_STAGE_TAG], ["-t", tag]):
            proc = subprocess.run(
                ["buildah", *_storage_args(), *common, *extra, str(root)],
                stdout=sys.stderr,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                lines = [line for line in proc.stderr.splitlines() if line.strip()]
                raise ImageError(f"buildah bud failed: {lines[-1] if lines else proc.returncode}")
    _prune()
    return time.monotonic() - started


def _prune() -> None:
    """Remove dangling images (earlier builds), layer by layer until none is left."""
    for _round in range(30):
        proc = buildah("rmi", "--prune")
        if proc.returncode != 0 or not proc.stdout.strip():
            return


def image_size(tag: str) -> int:
    """Uncompressed size of ``tag`` in bytes (buildah's ``images --format``)."""
    proc = buildah("images", "--format", "{{.Size}}", "--filter", f"reference={tag}")
    return _parse_size(proc.stdout.strip().splitlines()[0]) if proc.stdout.strip() else 0


def _parse_size(text: str) -> int:
    match = re.match(r"([\d.]+)\s*([kMGT]?B)", text)
    if not match:
        return 0
    factor = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}[match.group(2)]
    return int(float(match.group(1)) * factor)


def load_into_real_node(
    tag: str, say: Callable[[str], None], aliases: tuple[str, ...] = ()
) -> None:
    """Import ``tag`` into the running real node's containerd (namespace k8s.io).

    ``aliases``: more names for the same image (``ctr images tag``), for manifests that name
    an image no registry can give this machine (docs/real-node.md, item 8).
    """
    from kyklos.sandbox.realnode.build import pinned_node
    from kyklos.sandbox.realnode.host import STATE_DIR, Journal

    try:
        journal = Journal.from_json((STATE_DIR / "journal.json").read_text())
    except (OSError, ValueError, KeyError):
        raise ImageError(
            "--load needs a running real node (kyklos sandbox serve --node real); "
            f"{tag} stays in buildah's storage"
        ) from None
    socket = journal.node_root / "containerd" / "containerd.sock"
    ctr = pinned_node().path("ctr")
    if not socket.exists() or not ctr.exists():
        raise ImageError(f"the real node's containerd is not running ({socket} is missing)")
    started = time.monotonic()

    def ctr_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ctr), "--address", str(socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    # The node's store is kept across starts (sandbox/realnode/store.py): an image imported
    # before carries the buildah image id it was made from, and is not imported again.
    image_id = _image_id(tag)
    mark = f"{LOADED_ID_LABEL}={image_id}"
    listed = ctr_run("images", "ls", f"name=={tag}")
    if image_id and listed.returncode == 0 and mark in listed.stdout:
        for alias in aliases:
            _tag_alias(ctr_run, tag, alias)
        say(f"{tag} is already in the real node's containerd (image {image_id[:12]})")
        return
    with tempfile.TemporaryDirectory(prefix="kyklos-image-") as tmp:
        archive = Path(tmp) / "image.tar"
        # Uncompressed: the archive is read once, locally; gzip would only cost time.
        proc = buildah("push", "--disable-compression", tag, f"oci-archive:{archive}:{tag}")
        if proc.returncode != 0:
            raise ImageError(f"buildah push failed: {_last_line(proc)}")
        proc = ctr_run("images", "import", "--local", str(archive))
        if proc.returncode != 0:
            raise ImageError(f"ctr images import failed: {_last_line(proc)}")
    if image_id:
        proc = ctr_run("images", "label", tag, mark)
        if proc.returncode != 0:
            raise ImageError(f"ctr images label {tag} failed: {_last_line(proc)}")
    for alias in aliases:
        _tag_alias(ctr_run, tag, alias)
    say(f"loaded {tag} into the real node's containerd in {time.monotonic() - started:.0f}s")


def _tag_alias(
    ctr_run: Callable[..., subprocess.CompletedProcess[str]], tag: str, alias: str
) -> None:
    proc = ctr_run("images", "tag", "--force", tag, _normalized(alias))
    if proc.returncode != 0:
        raise ImageError(f"ctr images tag {alias} failed: {_last_line(proc)}")


def _normalized(name: str) -> str:
    """The full reference the kubelet asks containerd for (``python:3`` -> docker.io/library)."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def main(argv: list[str]) -> int:
    """``kyklos image ...``; return the exit code."""
    parser = argparse.ArgumentParser(prog="kyklos image", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the Kyklos image with buildah")
    build.add_argument(
        "--base", help="Python base image already in local storage (default: made by debootstrap)"
    )
    build.add_argument("--tag", help="image name (default: the chart's default image)")
    build.add_argument(
        "--load", action="store_true", help="import it into the running real node's containerd"
    )
    load = sub.add_parser("load", help="put a local image into the running real node")
    load.add_argument("name", help="an image in kyklos's buildah storage")
    load.add_argument("--as", dest="aliases", action="append", default=[], help="another name")
    web = sub.add_parser(
        "web", help=f"build {WEB_IMAGE}, a small web server on the Debian base (port 80)"
    )
    web.add_argument(
        "--load", action="store_true", help="import it into the running real node's containerd"
    )
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"image: {line}", file=sys.stderr, flush=True)

    def run() -> str | None:
        """The command; returns the image name to print, if any."""
        if args.command == "load":
            preflight(need_debootstrap=False)
            if not image_exists(args.name):
                raise ImageError(f"{args.name} is not in local storage (kyklos image build)")
            load_into_real_node(args.name, say, tuple(args.aliases))
            return None
        if args.command == "web":
            preflight(need_debootstrap=not image_exists(BASE_IMAGE))
            build_web(say)
            if args.load:
                load_into_real_node(WEB_IMAGE, say)
            return WEB_IMAGE
        tag: str = args.tag or chart_image(repo_root())
        preflight(need_debootstrap=args.base is None)
        if args.base is not None and not image_exists(args.base):
            raise ImageError(
                f"--base {args.base} is not in local storage (nothing is pulled); "
                "omit --base to make the Debian base here"
            )
        base = args.base or build_base(say)
        seconds = build_image(base, tag, say)
        size = image_size(tag)
        say(f"built {tag} in {seconds:.0f}s ({size / 1e6:.0f} MB)")
        if args.load:
            load_into_real_node(tag, say)
        return tag

    try:
        printed = run()
    except ImageError as exc:
        print(f"kyklos image: {exc}", file=sys.stderr)
        return 2
    if printed:
        print(printed)
    return 0
