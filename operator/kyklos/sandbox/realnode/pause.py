"""The pause image as an OCI archive: the static ``pause`` binary in one layer (pure bytes).

Without a registry there is no ``registry.k8s.io/pause``; the kubelet (through containerd's
``pinned_images.sandbox``) uses this image instead (docs/real-node.md, blocker 5). The archive
is an OCI image layout that ``ctr images import`` loads under ``name``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = 0  # reproducible: the same binary gives the same image digest
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
    }


def pause_archive(binary: bytes, name: str, arch: str = "amd64") -> bytes:
    """An OCI layout tar of an image running ``/pause`` as user 65535, named ``name``."""
    layer = _tar({"pause": (binary, 0o755)})
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
            },
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(OCI_CONFIG, config),
            "layers": [_descriptor(OCI_LAYER, layer)],
        },
        sort_keys=True,
    ).encode()
    manifest_descriptor = _descriptor(OCI_MANIFEST, manifest)
    manifest_descriptor["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
    }
    manifest_descriptor["platform"] = {"architecture": arch, "os": "linux"}
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [manifest_descriptor]},
        sort_keys=True,
    ).encode()
    files: dict[str, tuple[bytes, int]] = {
        "oci-layout": (b'{"imageLayoutVersion":"1.0.0"}', 0o644),
        "index.json": (index, 0o644),
    }
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = (blob, 0o644)
    return _tar(files)
