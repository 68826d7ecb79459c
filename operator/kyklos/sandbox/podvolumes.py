"""A pod's volumes as host directories: emptyDir, hostPath, PVC, configMap, secret, downwardAPI,
projected (service-account token included).

``VolumesMixin._prepare_volumes`` returns ``{volume name: host path}`` for the pod worker
(``kyklos.sandbox.pods``); a volume that cannot be prepared yet raises
``ContainerConfigError`` (the worker reports FailedMount and retries).
"""

from __future__ import annotations

import base64
import os
import time
from typing import TYPE_CHECKING

from kyklos.sandbox.podcontext import ApiError, JsonDict, PodParts, pod_with_status
from kyklos.sandbox.podenv import ContainerConfigError, field_ref_value, resource_field_value

if TYPE_CHECKING:
    from kyklos.sandbox.podstatus import Container


class VolumesMixin(PodParts):
    """Prepares the pod worker's volumes; reads the worker's identity, containers and context."""

    containers: list[Container]

    def _prepare_volumes(self, pod: JsonDict) -> dict[str, str]:
        out: dict[str, str] = {}
        vol_root = os.path.join(self.pod_dir, "volumes")
        for vol in pod["spec"].get("volumes") or []:
            name = vol["name"]
            path = os.path.join(vol_root, name)
            if "persistentVolumeClaim" in vol:
                out[name] = self._claim_dir(vol["persistentVolumeClaim"]["claimName"])
            elif "hostPath" in vol:
                hp = vol["hostPath"]
                kind = hp.get("type") or ""
                if not os.path.exists(hp["path"]):
                    if kind == "DirectoryOrCreate":
                        os.makedirs(hp["path"], exist_ok=True)
                    elif kind == "FileOrCreate":
                        os.makedirs(os.path.dirname(hp["path"]), exist_ok=True)
                        with open(hp["path"], "ab"):
                            pass
                    else:
                        # The kubelet keeps the pod in ContainerCreating (FailedMount).
                        raise ContainerConfigError(
                            f"hostPath type check failed: {hp['path']} does not exist"
                        )
                out[name] = hp["path"]
            else:
                os.makedirs(path, exist_ok=True)
                if "configMap" in vol:
                    self._write_keys(path, vol["configMap"], "configmaps", vol)
                elif "secret" in vol:
                    ref = dict(vol["secret"])
                    ref["name"] = ref.get("secretName", "")
                    self._write_keys(path, ref, "secrets", vol)
                elif "downwardAPI" in vol:
                    self._write_downward(path, vol["downwardAPI"].get("items") or [], pod)
                elif "projected" in vol:
                    self._write_projected(path, vol["projected"], pod)
                out[name] = path
        return out

    def _claim_dir(self, claim: str) -> str:
        api = self.ctx.api
        try:
            pvc = api.request(
                "GET", f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}"
            )
        except ApiError as e:
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}" not found ({e})') from None
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}" is not bound')
        try:
            pv = api.request("GET", f"/api/v1/persistentvolumes/{pv_name}")
        except ApiError as e:
            raise ContainerConfigError(f'persistentvolume "{pv_name}": {e}') from None
        spec = pv.get("spec") or {}
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        if not path:
            raise ContainerConfigError(f'persistentvolume "{pv_name}" has no hostPath/local path')
        os.makedirs(path, exist_ok=True)
        return str(path)

    def _fetch_data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        try:
            obj = self.ctx.api.request("GET", f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        except ApiError as e:
            if e.status == 404 and optional:
                return None
            raise ContainerConfigError(
                f'{kind[:-1]} "{name}" not found' if e.status == 404 else f"{kind} {name}: {e}"
            ) from None
        data: dict[str, bytes] = {}
        if kind == "secrets":
            for k, v in (obj.get("data") or {}).items():
                data[k] = base64.b64decode(v)
        else:
            for k, v in (obj.get("data") or {}).items():
                data[k] = v.encode()
            for k, v in (obj.get("binaryData") or {}).items():
                data[k] = base64.b64decode(v)
        return data

    def _write_keys(self, path: str, ref: JsonDict, kind: str, vol: JsonDict) -> None:
        data = self._fetch_data(kind, ref.get("name", ""), bool(ref.get("optional")))
        if data is None:
            return
        mode = int(ref.get("defaultMode", 0o644))
        items = ref.get("items")
        files = (
            [(i["key"], i["path"], i.get("mode", mode)) for i in items]
            if items
            else [(k, k, mode) for k in data]
        )
        for key, rel, fmode in files:
            if key not in data:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(
                    f"key {key!r} not found in {kind[:-1]} {ref.get('name')}"
                )
            _write_file(os.path.join(path, rel), data[key], int(fmode))

    def _write_downward(self, path: str, items: list[JsonDict], pod: JsonDict) -> None:
        full = pod_with_status(pod, self.pod_ip, self.ctx.host_ip)
        for item in items:
            if "fieldRef" in item:
                value = field_ref_value(full, item["fieldRef"]["fieldPath"])
            else:
                ref = item.get("resourceFieldRef") or {}
                target = next(
                    (c.spec for c in self.containers if c.name == ref.get("containerName")),
                    self.containers[0].spec if self.containers else {},
                )
                value = resource_field_value(target, ref, self.ctx.allocatable)
            _write_file(
                os.path.join(path, item["path"]), value.encode(), int(item.get("mode", 0o644))
            )

    def _write_projected(self, path: str, projected: JsonDict, pod: JsonDict) -> None:
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                token = self._token(pod, sat)
                _write_file(os.path.join(path, sat.get("path", "token")), token.encode(), 0o600)
            elif "configMap" in source:
                ref = source["configMap"]
                optional = bool(ref.get("optional"))
                # kube-root-ca.crt appears a moment after its namespace; give it that moment.
                if ref.get("name") == "kube-root-ca.crt" and not optional:
                    optional = self._waited_for_root_ca()
                self._write_keys(path, {**ref, "optional": optional}, "configmaps", {})
            elif "secret" in source:
                self._write_keys(path, source["secret"], "secrets", {})
            elif "downwardAPI" in source:
                self._write_downward(path, source["downwardAPI"].get("items") or [], pod)

    def _waited_for_root_ca(self) -> bool:
        """Whether to stop waiting for kube-root-ca.crt (after 10 s of retries)."""
        first: float | None = getattr(self, "_root_ca_first", None)
        if first is None:
            self._root_ca_first = time.monotonic()
            return False
        return bool(time.monotonic() - first > 10)

    def _token(self, pod: JsonDict, sat: JsonDict) -> str:
        sa = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [sat["audience"]] if sat.get("audience") else None,
                "expirationSeconds": int(sat.get("expirationSeconds", 3607)),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.pod_name,
                    "uid": self.uid,
                },
            },
        }
        try:
            out = self.ctx.api.request(
                "POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token", body
            )
        except ApiError as e:
            raise ContainerConfigError(
                f"cannot get a token for serviceaccount {sa!r}: {e}"
            ) from None
        return str((out.get("status") or {}).get("token", ""))


def _write_file(path: str, data: bytes, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
