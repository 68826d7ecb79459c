"""The sandbox node agent: a Python stand-in for the kubelet on N sandbox Nodes.

Run by ``kyklos sandbox serve``::

    python -m kyklos.sandbox.nodeagent --kubeconfig KUBECONFIG --nodes N \
        [--policy FILE] --data-dir DIR [--parent-pid PID]

It registers the Nodes ``sandbox-node-1`` .. ``sandbox-node-N`` (labels, capacity and
allocatable from the policy, addresses, nodeInfo, a pod CIDR ``10.244.<i>.0/24``), keeps
their Ready condition and their Lease in ``kube-node-lease`` fresh, installs the default
StorageClass and its provisioner (`kyklos.sandbox.storage`), and runs the pods the
scheduler binds to its nodes (`kyklos.sandbox.pods`) per the kubelet policy
(`kyklos.sandbox.policy`). One list+watch per node (field selector
``spec.nodeName=<node>``); no polling of the API.

Pod IPs come from the node's pod CIDR and are not routable: processes share the host's
network, so a server in a pod listens on the host (readiness probes go to 127.0.0.1).

The policy file is re-read when its content changes (checked every 0.5 s); after a
successful reload every Node gets the annotation ``sandbox.kyklos.io/policy-sha256`` with
the SHA-256 of the file's bytes. A malformed policy at start is one line on stderr and
exit code 2 before anything is registered; a malformed policy on reload is logged and
the previous one kept. New containers use the policy current when they are created.

SIGTERM/SIGINT, or the death of ``--parent-pid``: every pod process gets SIGTERM, then
SIGKILL after its pod's grace period; mount points created on the host are removed; exit
0. Pod processes also die with the agent if it is killed (``PR_SET_PDEATHSIG``). A state
file (``<data-dir>/nodeagent-state.json``) lists live processes and mount points; an
agent started on the same data dir kills leftovers from it, and treats containers the
previous agent reported running as a kubelet treats them after a node restart: terminated
(exit 137, reason ContainerStatusUnknown), then restarted or failed per restartPolicy.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlparse

import urllib3
import yaml
from kubernetes.config.config_exception import ConfigException

from kyklos.sandbox.pods import (
    ApiError,
    JsonDict,
    NodeContext,
    PodWorker,
    now_rfc3339,
    process_start_time,
)
from kyklos.sandbox.policy import Policy, PolicyError, load_policy, parse_policy
from kyklos.sandbox.storage import Provisioner

log = logging.getLogger("kyklos.sandbox.nodeagent")

POLICY_ANNOTATION = "sandbox.kyklos.io/policy-sha256"
LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10.0
NODE_STATUS_SECONDS = 60.0
POLICY_POLL_SECONDS = 0.5
STATE_FILE = "nodeagent-state.json"


class Kube:
    """A minimal JSON client for the Kubernetes API, configured from a kubeconfig."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self.host = cfg.host.rstrip("/")
        self.headers: dict[str, str] = {}
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        if token:
            self.headers["Authorization"] = token if " " in token else f"Bearer {token}"
        self.pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=32,
            cert_reqs="CERT_REQUIRED" if cfg.verify_ssl else "CERT_NONE",
            ca_certs=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
        )

    def _url(self, path: str, query: Mapping[str, str] | None) -> str:
        return self.host + path + ("?" + urlencode(query) if query else "")

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JsonDict:
        """One API call; raises ApiError for a non-2xx answer."""
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        try:
            resp = self.pool.request(
                method,
                self._url(path, query),
                body=data,
                headers=headers,
                timeout=urllib3.Timeout(connect=5.0, read=30.0),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as e:
            # Callers retry API errors; a connection problem is one of them.
            raise ApiError(503, f"{method} {path}: {e}") from None
        if resp.status >= 300:
            try:
                message = json.loads(resp.data).get("message", resp.data.decode())
            except ValueError:
                message = resp.data.decode(errors="replace")
            raise ApiError(resp.status, f"{method} {path}: {message}")
        return json.loads(resp.data) if resp.data else {}

    def list_watch(
        self,
        path: str,
        stopping: threading.Event,
        query: Mapping[str, str] | None = None,
    ) -> Iterator[tuple[str, JsonDict]]:
        """List then watch `path` forever: ("ADDED"/"MODIFIED"/"DELETED", obj), plus
        ("RELISTED", {"items": [...]}) after every full list so callers can drop objects
        that vanished while no watch was open."""
        rv = ""
        while not stopping.is_set():
            try:
                if not rv:
                    listing = self.request("GET", path, query=query)
                    rv = listing["metadata"]["resourceVersion"]
                    for item in listing.get("items") or []:
                        yield "ADDED", item
                    yield "RELISTED", {"items": listing.get("items") or []}
                q = dict(query or {})
                q.update(
                    watch="1",
                    resourceVersion=rv,
                    allowWatchBookmarks="true",
                    timeoutSeconds="60",
                )
                resp = self.pool.request(
                    "GET",
                    self._url(path, q),
                    headers=self.headers,
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=5.0, read=90.0),
                    retries=False,
                )
                if resp.status >= 300:
                    resp.release_conn()
                    if resp.status == 410:
                        rv = ""
                        continue
                    raise ApiError(resp.status, f"watch {path}")
                try:
                    for line in resp:
                        if stopping.is_set():
                            return
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                rv = ""
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            yield kind, obj
                finally:
                    resp.release_conn()
            except (ApiError, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                if stopping.is_set():
                    return
                log.warning("watch %s: %s; retrying", path, e)
                stopping.wait(1.0)


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PodIPs:
    """Allocates pod IPs from one node's /24 (10.244.<i>.2 .. .254)."""

    def __init__(self, index: int) -> None:
        self.prefix = f"10.244.{index}."
        self.used: set[str] = set()
        self.lock = threading.Lock()

    def take(self, wanted: str = "") -> str:
        with self.lock:
            if wanted.startswith(self.prefix) and wanted not in self.used:
                self.used.add(wanted)
                return wanted
            for n in range(2, 255):
                ip = f"{self.prefix}{n}"
                if ip not in self.used:
                    self.used.add(ip)
                    return ip
        raise RuntimeError(f"no free pod IP in {self.prefix}0/24")

    def release(self, ip: str) -> None:
        with self.lock:
            self.used.discard(ip)


class NodeAgent:
    """Registers the sandbox Nodes and runs their pods until stopped."""

    def __init__(
        self,
        api: Kube,
        nodes: int,
        policy: Policy,
        policy_path: str | None,
        data_dir: str,
        parent_pid: int | None,
        node_prefix: str = "sandbox-node-",
        taints: list[JsonDict] | None = None,
    ) -> None:
        self.api = api
        self.node_names = [f"{node_prefix}{i}" for i in range(1, nodes + 1)]
        self.taints = taints or []
        self.policy = policy
        self.policy_path = policy_path
        self.data_dir = os.path.abspath(data_dir)
        self.parent_pid = parent_pid
        self.stopping = threading.Event()
        self.kubelet_version = "v0.0.0"
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()
        self.lock = threading.Lock()
        self.ips = {n: PodIPs(i) for i, n in enumerate(self.node_names, start=1)}
        self.boot_id = hashlib.sha256(f"{os.getpid()}{time.time()}".encode()).hexdigest()[:32]
        url = urlparse(api.host)
        use_ns = os.geteuid() == 0 and os.environ.get("KYKLOS_SANDBOX_NO_MOUNTNS", "") in (
            "",
            "0",
        )
        self.mountpoints: set[str] = set()
        self.contexts = {
            name: NodeContext(
                api=api,
                data_dir=self.data_dir,
                node_name=name,
                host_ip="127.0.0.1",
                allocatable=policy.nodes.as_capacity(),
                policy=lambda: self.policy,
                api_host=url.hostname or "127.0.0.1",
                api_port=str(url.port or 443),
                use_mount_ns=use_ns,
                on_process_change=self.save_state,
                mountpoints=self.mountpoints,
                stopping=self.stopping,
            )
            for name in self.node_names
        }
        # One lock for all mount point bookkeeping (the set is shared).
        shared_lock = threading.Lock()
        for ctx in self.contexts.values():
            ctx.lock = shared_lock
        self.state_lock = threading.Lock()

    # -- state file

    def _state_path(self) -> str:
        return os.path.join(self.data_dir, STATE_FILE)

    def save_state(self) -> None:
        """Record live pod processes and created mount points for a later agent."""
        with self.lock:
            pids = [p for w in self.workers.values() for p in w.pids()]
        with self.state_lock:
            state = {"agentPid": os.getpid(), "pids": pids, "mountpoints": sorted(self.mountpoints)}
            tmp = self._state_path() + ".tmp"
            with open(tmp, "w") as f:
                json.dump(state, f)
            os.replace(tmp, self._state_path())

    def clean_previous(self) -> None:
        """Kill processes and remove mount points a previous agent left behind."""
        try:
            with open(self._state_path()) as f:
                state = json.load(f)
        except (OSError, ValueError):
            return
        for pid, ticks in state.get("pids") or []:
            if ticks is not None and process_start_time(pid) == ticks:
                log.info("killing process %d left by a previous agent", pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        remove_mountpoints(state.get("mountpoints") or [])

    # -- nodes

    def node_manifest(self, name: str, index: int) -> JsonDict:
        nodes = self.policy.nodes
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch(),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": _arch(),
            "node.kubernetes.io/instance-type": "sandbox",
            **nodes.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                    POLICY_ANNOTATION: self.policy.sha256,
                },
            },
            "spec": {
                "podCIDR": f"10.244.{index}.0/24",
                "podCIDRs": [f"10.244.{index}.0/24"],
                **({"taints": self.taints} if self.taints else {}),
            },
        }

    def node_status(self, name: str) -> JsonDict:
        now = now_rfc3339()
        capacity = self.policy.nodes.as_capacity()
        conds = [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        uname = os.uname()
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": m,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": self.start_time,
                }
                for t, s, r, m in conds
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hashlib.md5(name.encode()).hexdigest(),
                "systemUUID": hashlib.md5(("uuid" + name).encode()).hexdigest(),
                "bootID": self.boot_id,
                "kernelVersion": uname.release,
                "osImage": "Kyklos sandbox",
                "containerRuntimeVersion": "sandbox://0.1.0",
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
        }

    def register_nodes(self) -> None:
        """Create the Nodes (or update them after an agent restart) and their status."""
        for name in self.node_names:
            self.register_node(name)
        log.info("registered nodes %s", ", ".join(self.node_names))

    def register_node(self, name: str) -> None:
        """Create one Node, or update the labels and annotations of an existing one."""
        manifest = self.node_manifest(name, self.node_names.index(name) + 1)
        try:
            self.api.request("POST", "/api/v1/nodes", manifest)
        except ApiError as e:
            if e.status != 409:
                raise
            self.api.request(
                "PATCH",
                f"/api/v1/nodes/{name}",
                {"metadata": {k: manifest["metadata"][k] for k in ("labels", "annotations")}},
                content_type="application/merge-patch+json",
            )
        self.patch_node_status(name)

    def patch_node_status(self, name: str, previous: Policy | None = None) -> None:
        """Post the node status; resources only `previous` had are removed (merge patch)."""
        status = self.node_status(name)
        if previous is not None:
            for key in previous.nodes.as_capacity():
                if key not in status["capacity"]:
                    status["capacity"][key] = None
                    status["allocatable"][key] = None
        self.api.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )

    def renew_lease(self, name: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        patch = {
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": _micro_time(),
            }
        }
        try:
            self.api.request("PATCH", path, patch, content_type="application/merge-patch+json")
        except ApiError as e:
            if e.status != 404:
                raise
            try:
                node = self.api.request("GET", f"/api/v1/nodes/{name}")
            except ApiError as missing:
                if missing.status != 404:
                    raise
                # Someone deleted the Node: register it again rather than run unseen.
                log.warning("node %s was deleted; registering it again", name)
                self.register_node(name)
                node = self.api.request("GET", f"/api/v1/nodes/{name}")
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": name,
                            "uid": node["metadata"]["uid"],
                        }
                    ],
                },
                "spec": patch["spec"],
            }
            self.api.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease
            )

    def heartbeat(self) -> None:
        """Renew leases every 10 s and post node status every 60 s."""
        last_status = time.monotonic()
        while not self.stopping.is_set():
            for name in self.node_names:
                try:
                    self.renew_lease(name)
                except (ApiError, OSError, urllib3.exceptions.HTTPError) as e:
                    log.warning("lease %s: %s", name, e)
            if time.monotonic() - last_status >= NODE_STATUS_SECONDS:
                last_status = time.monotonic()
                for name in self.node_names:
                    try:
                        self.patch_node_status(name)
                    except (ApiError, OSError, urllib3.exceptions.HTTPError) as e:
                        log.warning("node status %s: %s", name, e)
            self.stopping.wait(LEASE_RENEW_SECONDS)

    # -- policy

    def watch_policy(self) -> None:
        """Reload the policy file when its bytes change; annotate Nodes after a reload."""
        if not self.policy_path:
            return
        last = self.policy.sha256
        while not self.stopping.wait(POLICY_POLL_SECONDS):
            try:
                with open(self.policy_path, "rb") as f:
                    data = f.read()
            except OSError as e:
                log.warning("policy %s: %s; keeping the previous policy", self.policy_path, e)
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest == last:
                continue
            last = digest
            try:
                policy = parse_policy(data, self.policy_path)
            except PolicyError as e:
                log.error("%s; keeping the previous policy", e)
                continue
            previous, self.policy = self.policy, policy
            log.info("policy reloaded (sha256 %s)", digest)
            for name in self.node_names:
                labels: dict[str, str | None] = dict(
                    self.node_manifest(name, 1)["metadata"]["labels"]
                )
                for key in previous.nodes.labels:
                    labels.setdefault(key, None)
                self.contexts[name].allocatable = policy.nodes.as_capacity()
                try:
                    self.api.request(
                        "PATCH",
                        f"/api/v1/nodes/{name}",
                        {
                            "metadata": {
                                "labels": labels,
                                "annotations": {POLICY_ANNOTATION: digest},
                            }
                        },
                        content_type="application/merge-patch+json",
                    )
                    self.patch_node_status(name, previous)
                except (ApiError, OSError, urllib3.exceptions.HTTPError) as e:
                    log.warning("node %s: cannot record the policy: %s", name, e)

    # -- pods

    def watch_pods(self, node: str) -> None:
        query = {"fieldSelector": f"spec.nodeName={node}"}
        for kind, obj in self.api.list_watch("/api/v1/pods", self.stopping, query):
            try:
                self.on_pod_event(node, kind, obj)
            except (ApiError, OSError, urllib3.exceptions.HTTPError) as e:
                log.warning("pod event on %s: %s", node, e)

    def on_pod_event(self, node: str, kind: str, pod: JsonDict) -> None:
        if kind == "RELISTED":
            alive = {p["metadata"]["uid"] for p in pod["items"]}
            with self.lock:
                lost = [
                    w
                    for uid, w in self.workers.items()
                    if uid not in alive and w.ctx.node_name == node
                ]
            for w in lost:
                w.gone()
            return
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
        if worker is not None:
            if kind == "DELETED":
                worker.gone()
            else:
                worker.update(pod)
            return
        if kind == "DELETED":
            with self.lock:
                self.finished.discard(uid)
            return
        if self.stopping.is_set():
            return
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if uid in self.finished or terminal:
            if pod["metadata"].get("deletionTimestamp"):
                # A finished pod has nothing to stop: complete its deletion at once.
                with contextlib.suppress(ApiError):
                    self.api.request(
                        "DELETE",
                        f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/"
                        f"{pod['metadata']['name']}",
                        {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                    )
            return
        ips = self.ips[node]
        if pod["spec"].get("hostNetwork"):
            ip = "127.0.0.1"  # the node's address, as for any host-network pod
        else:
            ip = ips.take((pod.get("status") or {}).get("podIP", ""))
        holder: list[PodWorker] = []

        def done() -> None:
            w = holder[0]
            ips.release(w.pod_ip)
            with self.lock:
                self.workers.pop(uid, None)
                if w.terminal:
                    self.finished.add(uid)
            self.save_state()

        worker = PodWorker(self.contexts[node], pod, ip, done)
        holder.append(worker)
        with self.lock:
            self.workers[uid] = worker
        worker.start()

    # -- lifecycle

    def run(self) -> int:
        self.start_time = now_rfc3339()
        os.makedirs(self.data_dir, exist_ok=True)
        self.clean_previous()
        self.save_state()
        try:
            self.kubelet_version = str(self.api.request("GET", "/version").get("gitVersion"))
        except (ApiError, OSError, urllib3.exceptions.HTTPError) as e:
            log.warning("cannot read the API server version: %s", e)
        self.register_nodes()
        provisioner = Provisioner(self.api, self.data_dir, self.stopping)
        provisioner.ensure_storage_class()
        provisioner.start()
        threads = [
            threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True),
            threading.Thread(target=self.watch_policy, name="policy", daemon=True),
        ]
        threads += [
            threading.Thread(target=self.watch_pods, args=(n,), name=f"watch-{n}", daemon=True)
            for n in self.node_names
        ]
        for t in threads:
            t.start()
        while not self.stopping.wait(POLICY_POLL_SECONDS):
            if self.parent_pid is not None and not _alive(self.parent_pid):
                log.info("parent %d is gone; stopping", self.parent_pid)
                break
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Stop every pod process (SIGTERM, SIGKILL after its grace) and clean up."""
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.wake()
        for w in workers:
            w.join(timeout=w._grace(w._pod) + 10)
        remove_mountpoints(sorted(self.mountpoints))
        self.mountpoints.clear()
        with contextlib.suppress(OSError):
            os.unlink(self._state_path())
        log.info("stopped")


def remove_mountpoints(paths: list[str]) -> None:
    """Remove mount points the agent created, if empty and unused (deepest first).

    Another sandbox on this machine may have a pod with a bind mount on the same path in
    its own mount namespace; removing the path would detach that mount, so paths that are
    a mount point in any process's namespace stay.
    """
    busy = mountpoints_in_use()
    for path in sorted(paths, key=len, reverse=True):
        if path in busy:
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            elif os.path.isfile(path) and os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass


def mountpoints_in_use() -> set[str]:
    """Mount point paths of every mount namespace visible through /proc."""
    seen_ns: set[str] = set()
    busy: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.readlink(f"/proc/{entry}/ns/mnt")
            if ns in seen_ns:
                continue
            with open(f"/proc/{entry}/mountinfo") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        seen_ns.add(ns)
        for line in lines:
            fields = line.split(" ")
            if len(fields) > 4:
                busy.add(_unescape_mount_path(fields[4]))
    return busy


def _unescape_mount_path(text: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for a space, ...)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie parent counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kyklos.sandbox.nodeagent",
        description="Kyklos sandbox node agent (a kubelet stand-in running pods as processes)",
    )
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the sandbox")
    parser.add_argument("--nodes", type=int, default=2, help="number of Nodes (default 2)")
    parser.add_argument("--policy", default=None, help="kubelet policy YAML (default: built in)")
    parser.add_argument("--data-dir", required=True, help="directory for pods, volumes, logs")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this pid dies")
    # For tests that run a second, private agent beside serve's (e.g. to kill and restart it).
    parser.add_argument("--node-prefix", default="sandbox-node-", help=argparse.SUPPRESS)
    parser.add_argument("--taint", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    taints = []
    for text in args.taint:
        key_value, _, effect = text.partition(":")
        key, _, value = key_value.partition("=")
        if not key or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            parser.error(
                f"--taint {text!r}: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute"
            )
        taints.append(
            {"key": key, "value": value, "effect": effect}
            if value
            else {"key": key, "effect": effect}
        )
    args.taints = taints
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("KYKLOS_SANDBOX_LOG_LEVEL", "INFO"),
        format="%(asctime)s nodeagent %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        policy = load_policy(args.policy)
    except PolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        api = Kube(args.kubeconfig)
    except (ConfigException, OSError, ValueError, yaml.YAMLError) as e:
        print(f"error: {args.kubeconfig}: cannot load kubeconfig: {e}", file=sys.stderr)
        return 2
    agent = NodeAgent(
        api,
        args.nodes,
        policy,
        args.policy,
        args.data_dir,
        args.parent_pid,
        node_prefix=args.node_prefix,
        taints=args.taints,
    )

    def on_signal(signum: int, frame: Any) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return agent.run()
    except (ApiError, OSError, urllib3.exceptions.HTTPError) as e:
        print(f"error: node agent: {e}", file=sys.stderr)
        agent.shutdown()
        return 1


if __name__ == "__main__":
    sys.exit(main())
