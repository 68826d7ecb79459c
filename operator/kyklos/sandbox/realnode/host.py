"""What the real node changes on the host, recorded before each change and restored on stop.

One real node per machine: ``/run/kyklos-real-node/lock`` is held (``flock``) by the ``serve``
process that owns it, and ``journal.json`` beside it records, *before* anything is changed:
the owner's pid and data dir, the original value of every sysctl the node or its components may
change, the bridge and route it adds, the iptables chains that existed before, and which fixed
host paths did not exist yet. ``restore`` undoes all of it: it kills what runs in the node's
pod cgroups, unmounts what is mounted under the node's data dir, deletes the node's iptables
chains (and the rules jumping to them), the route and the bridge, puts the sysctls back and
removes the host paths the node created. It is idempotent; a start that finds a journal whose
owner is dead (a crashed run) restores it first. The journal lives on /run (tmpfs), so a reboot
forgets it together with everything it describes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kyklos.sandbox.realnode.config import (
    BRIDGE,
    CGROUP_PARENT,
    NODE_IP,
    POD_CIDR,
    SERVICE_CIDR,
)

STATE_DIR = Path(os.environ.get("KYKLOS_REAL_NODE_STATE", "/run/kyklos-real-node"))
# Sysctls the kubelet (kernel tunables), kube-proxy (route_localnet) and the bridge network
# (forwarding, bridge netfilter) may set; docs/real-node.md item 10 lists what was seen.
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
# Sysctls the node itself sets: routing between pods and to Services through the bridge.
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
# Fixed paths the kubelet, containerd and the CNI plugins use whatever they are configured with.
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/containerd",
    "/run/netns",
    "/run/nri",
    "/opt/containerd",
    "/var/run/cdi",
)
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-")
CGROUP_ROOT = Path("/sys/fs/cgroup")

Say = Callable[[str], None]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2


class HostError(Exception):
    """The host cannot run a real node now; the message is one line naming what to do."""


@dataclass
class Journal:
    """What one real node changed on the host (the JSON file's content)."""

    pid: int
    data_dir: str
    sysctls: dict[str, str] = field(default_factory=dict)
    created_paths: list[str] = field(default_factory=list)
    iptables_before: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    bridge: bool = False
    route: bool = False

    def to_json(self) -> str:
        """Serialise (the journal crosses from a crashed run to the next)."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Journal:
        """Parse a journal written by ``to_json``."""
        data = json.loads(text)
        return cls(
            pid=int(data["pid"]),
            data_dir=str(data["data_dir"]),
            sysctls={str(k): str(v) for k, v in data.get("sysctls", {}).items()},
            created_paths=[str(p) for p in data.get("created_paths", [])],
            iptables_before={
                str(binary): {str(t): [str(c) for c in chains] for t, chains in tables.items()}
                for binary, tables in data.get("iptables_before", {}).items()
            },
            bridge=bool(data.get("bridge", False)),
            route=bool(data.get("route", False)),
        )

    @property
    def node_root(self) -> Path:
        return Path(self.data_dir) / "node"


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise HostError(f"`{' '.join(argv)}` failed: {detail[-1] if detail else proc.returncode}")
    return proc


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    """Current value of a sysctl, or None when this kernel does not have it."""
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    """Set a sysctl (raises HostError naming it when the kernel refuses)."""
    try:
        _sysctl_path(name).write_text(value + "\n")
    except OSError as exc:
        raise HostError(f"cannot set sysctl {name}={value}: {exc.strerror}") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def iptables_binaries() -> list[str]:
    """The iptables front ends present (IPv4 and IPv6: the kubelet and kube-proxy use both)."""
    return [b for b in ("iptables", "ip6tables") if shutil.which(b)]


def list_chains(binary: str) -> dict[str, list[str]]:
    """User-defined chains per table, as ``<binary>-save`` prints them."""
    chains: dict[str, list[str]] = {}
    for table in IPTABLES_TABLES:
        proc = _run([f"{binary}-save", "-t", table], check=False)
        if proc.returncode != 0:
            continue
        chains[table] = [
            line[1:].split()[0] for line in proc.stdout.splitlines() if line.startswith(":")
        ]
    return chains


def remove_new_chains(binary: str, before: dict[str, list[str]], say: Say) -> list[str]:
    """Delete chains named KUBE-*/CNI-* that were not there before, and every rule using them."""
    removed: list[str] = []
    for table in IPTABLES_TABLES:
        proc = _run([f"{binary}-save", "-t", table], check=False)
        if proc.returncode != 0:
            continue
        existing = set(before.get(table, []))
        ours = {
            line[1:].split()[0]
            for line in proc.stdout.splitlines()
            if line.startswith(":")
            and line[1:].split()[0].startswith(OUR_CHAIN_PREFIXES)
            and line[1:].split()[0] not in existing
        }
        if not ours:
            continue
        # Rules in chains we keep that jump to ours: delete them one by one (-D with the spec).
        for line in proc.stdout.splitlines():
            if not line.startswith("-A "):
                continue
            parts = shlex.split(line)  # comments are quoted: "kubernetes service portals"
            chain = parts[1]
            if chain in ours:
                continue
            if any(target in ours for target in _targets(parts)):
                _run([binary, "-t", table, "-D", *parts[1:]], check=False)
        for chain in sorted(ours):
            _run([binary, "-t", table, "-F", chain], check=False)
        for chain in sorted(ours):
            _run([binary, "-t", table, "-X", chain], check=False)
        removed += [f"{binary}/{table}/{c}" for c in sorted(ours)]
    if removed:
        say(f"removed {len(removed)} iptables chain(s) of the real node ({binary})")
    return removed


def _targets(parts: list[str]) -> list[str]:
    return [parts[i + 1] for i, word in enumerate(parts[:-1]) if word in ("-j", "-g")]


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    points: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return points
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                points.append(point)
    return points


def unmount_under(root: Path) -> int:
    """Lazily unmount every mount point under ``root``, deepest first; return how many."""
    count = 0
    for _round in range(5):  # a mount can hide another one on the same point
        points = sorted(set(_mounts_under(root)), key=len, reverse=True)
        if not points:
            break
        for point in points:
            if _libc.umount2(point.encode(), MNT_DETACH) == 0:
                count += 1
            elif ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
                continue
    return count


def _hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (cgroup v2: the root; v1/hybrid: one per controller)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    if not CGROUP_ROOT.is_dir():
        return []
    return [h for h in CGROUP_ROOT.iterdir() if (h / "cgroup.procs").exists()]


def _pod_cgroups() -> list[Path]:
    """The node's cgroup parent (the kubelet's cgroupRoot) in every hierarchy."""
    return [h / CGROUP_PARENT for h in _hierarchies() if (h / CGROUP_PARENT).is_dir()]


def create_cgroup_parent() -> None:
    """Create the kubelet's cgroupRoot in every hierarchy (the kubelet requires it to exist)."""
    for hierarchy in _hierarchies():
        try:
            (hierarchy / CGROUP_PARENT).mkdir(exist_ok=True)
        except OSError as exc:
            raise HostError(
                f"cannot create cgroup {hierarchy / CGROUP_PARENT}: {exc.strerror}"
            ) from None


def _cgroup_dirs(top: Path) -> list[Path]:
    """``top`` and every cgroup below it; cgroups vanishing meanwhile are skipped (os.walk)."""
    return [Path(root) for root, _dirs, _files in os.walk(top)]


def kill_pod_processes() -> int:
    """SIGKILL every process under the node's cgroup parent; remove its cgroups; return count."""
    killed: set[int] = set()
    for _round in range(10):
        pids: set[int] = set()
        for top in _pod_cgroups():
            for directory in _cgroup_dirs(top):
                with contextlib.suppress(OSError, ValueError):
                    text = (directory / "cgroup.procs").read_text()
                    pids.update(int(p) for p in text.split())
        pids.discard(os.getpid())
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        time.sleep(0.2)
    for top in _pod_cgroups():
        for directory in sorted(_cgroup_dirs(top), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
    return len(killed)


def kill_node_processes(node_root: Path) -> int:
    """SIGKILL leftover node processes (shims, kubelet, ...) whose command line names the node."""
    marker = str(node_root)
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
    return killed


class HostChanges:
    """The lock and journal of the one real node this machine may run."""

    def __init__(self, data_dir: Path, state_dir: Path = STATE_DIR) -> None:
        self.data_dir = data_dir
        self.state_dir = state_dir
        self.journal_path = state_dir / "journal.json"
        self._lock: IO[str] | None = None
        self.journal = Journal(pid=os.getpid(), data_dir=str(data_dir))

    # ---------------------------------------------------------------- ownership

    def acquire(self, say: Say) -> None:
        """Take the machine's real-node lock; clean up after a crashed run; else refuse."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.state_dir / "lock", "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            owner = self._previous()
            who = f"pid {owner.pid}, data dir {owner.data_dir}" if owner else "another process"
            raise HostError(
                f"another sandbox with a real node is running on this machine ({who}); "
                "stop it first (one real node per machine)"
            ) from None
        self._lock = handle
        previous = self._previous()
        if previous is not None and previous.pid != os.getpid():
            if _pid_alive(previous.pid) and _pid_holds_state(previous.pid):
                raise HostError(
                    f"a real node of pid {previous.pid} is still running; stop it first"
                )
            say(
                f"cleaning up what a previous real node left (pid {previous.pid}, "
                f"data dir {previous.data_dir})"
            )
            restore(previous, say)
        self._save()

    def release(self) -> None:
        """Forget the journal and drop the lock (after ``restore``)."""
        with contextlib.suppress(OSError):
            self.journal_path.unlink()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _previous(self) -> Journal | None:
        try:
            return Journal.from_json(self.journal_path.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save(self) -> None:
        tmp = self.journal_path.with_name("journal.json.tmp")
        tmp.write_text(self.journal.to_json())
        tmp.replace(self.journal_path)

    # ---------------------------------------------------------------- changes

    def record_before_start(self) -> None:
        """Record sysctls, iptables chains and absent host paths before anything runs."""
        for name in SYSCTLS:
            value = read_sysctl(name)
            if value is not None:
                self.journal.sysctls[name] = value
        self.journal.created_paths = [p for p in HOST_PATHS if not os.path.lexists(p)]
        self.journal.iptables_before = {b: list_chains(b) for b in iptables_binaries()}
        self._save()

    def set_up(self) -> None:
        """The node's cgroup parent, the bridge with the node's address, the service route."""
        create_cgroup_parent()
        self.journal.bridge = True
        self.journal.route = True
        self._save()
        if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
            _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        prefix = POD_CIDR.split("/")[1]
        _run(["ip", "addr", "replace", f"{NODE_IP}/{prefix}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        # Service traffic from the host goes to the bridge, never out of the machine's uplink.
        _run(["ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
        for name, value in NODE_SYSCTLS.items():
            if read_sysctl(name) is None:
                raise HostError(
                    f"sysctl {name} is missing: load the br_netfilter kernel module first"
                )
            write_sysctl(name, value)


def _pid_holds_state(pid: int) -> bool:
    """True when ``pid`` is a process that could own the journal (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kyklos" in cmdline or b"sandbox" in cmdline


def restore(journal: Journal, say: Say) -> None:
    """Undo everything the journal records (idempotent; every step tolerates absence)."""
    node_root = journal.node_root
    killed = kill_pod_processes() + kill_node_processes(node_root)
    if killed:
        say(f"killed {killed} leftover real-node process(es)")
        time.sleep(0.3)
    unmounted = unmount_under(node_root)
    if unmounted:
        say(f"unmounted {unmounted} mount(s) under {node_root}")
    for binary, before in journal.iptables_before.items():
        remove_new_chains(binary, before, say)
    if journal.route:
        _run(["ip", "route", "del", SERVICE_CIDR, "dev", BRIDGE], check=False)
    if journal.bridge:
        _run(["ip", "link", "del", BRIDGE], check=False)
    changed = []
    for name, value in journal.sysctls.items():
        if read_sysctl(name) not in (None, value):
            with contextlib.suppress(HostError):
                write_sysctl(name, value)
                changed.append(f"{name}={value}")
    if changed:
        say("restored sysctls " + ", ".join(changed))
    for path in journal.created_paths:
        if os.path.lexists(path):
            unmount_under(Path(path))
            shutil.rmtree(path, ignore_errors=True)
    _remove_log_links(node_root)


def _remove_log_links(node_root: Path) -> None:
    """Remove /var/log/containers links into the node's pod logs (the dir may predate us)."""
    links = Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(node_root)):
                link.unlink()


def restore_from_state(state_dir: Path, owner: int, say: Say) -> bool:
    """Restore the journal in ``state_dir`` if process ``owner`` wrote it (the crash path)."""
    path = state_dir / "journal.json"
    try:
        journal = Journal.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if journal.pid != owner:
        return False
    restore(journal, say)
    with contextlib.suppress(OSError):
        path.unlink()
    return True
