"""Where a ``file://``, ``pvc://`` or plain-path URI lives on the pod's filesystem."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

PVC_ROOT_ENV = "KYKLOS_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/kyklos/pvc"
MODEL_FILE = "model.json"


class UriError(ValueError):
    """A URI these example programs cannot read or write."""


def local_path(uri: str, env: Mapping[str, str] | None = None) -> Path:
    """``file:///p`` -> /p; ``pvc://<claim>/<p>`` -> $KYKLOS_PVC_ROOT/<claim>/<p>; paths as is.

    The operator mounts each claim a pod uses at ``$KYKLOS_PVC_ROOT/<claim>``.
    """
    if not uri:
        raise UriError("empty URI")
    if uri.startswith("pvc://"):
        claim, _, rest = uri[len("pvc://") :].partition("/")
        if not claim or not rest:
            raise UriError(f"{uri}: expected pvc://<claim>/<path>")
        root = Path((os.environ if env is None else env).get(PVC_ROOT_ENV) or DEFAULT_PVC_ROOT)
        return root / claim / unquote(rest)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    raise UriError(f"{uri}: the example programs read file:// and pvc:// URIs only")


def model_file(uri: str, env: Mapping[str, str] | None = None) -> Path:
    """The model's JSON file: the URI itself, or model.json inside it for a directory URI."""
    path = local_path(uri, env)
    if uri.endswith("/") or path.is_dir():
        return path / MODEL_FILE
    return path
