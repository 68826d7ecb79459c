"""Writing request-log files to the artifact store (``pvc://`` maps to the claim's mount).

Local paths (``file://``, plain paths, mounted claims) are written to a temporary file and
renamed, so a reader never sees half a file; other schemes go through fsspec.
"""

from __future__ import annotations

import os
import tempfile
from urllib.parse import urlparse

import fsspec

from kyklos.logic.artifacts import PVC_SCHEME

DEFAULT_PVC_ROOT = "/mnt/kyklos/pvc"


def local_path(uri: str) -> str | None:
    """The local file path of ``uri`` (None for remote stores)."""
    parsed = urlparse(uri)
    if parsed.scheme == PVC_SCHEME:
        root = os.environ.get("KYKLOS_PVC_ROOT", DEFAULT_PVC_ROOT)
        return os.path.join(root, parsed.netloc, parsed.path.lstrip("/"))
    if parsed.scheme == "file":
        return parsed.path
    if parsed.scheme == "":
        return uri
    return None


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` at ``uri`` atomically where the store is local (OSError on failure)."""
    path = local_path(uri)
    if path is None:
        with fsspec.open(uri, "wb") as f:
            f.write(data)
        return
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def exists(uri: str) -> bool:
    """Whether a file exists at ``uri`` (False when the store cannot tell)."""
    path = local_path(uri)
    if path is not None:
        return os.path.isfile(path)
    try:
        fs, _, paths = fsspec.get_fs_token_paths(uri)
        return bool(fs.exists(paths[0]))
    except (OSError, ValueError):
        return False
