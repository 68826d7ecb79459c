"""Watchdog that kills what is left of a sandbox when ``serve`` dies, even by SIGKILL.

``serve`` starts it in a new session with a pipe on its stdin and keeps the write end open.
The watchdog snapshots ``serve``'s process tree every half second; when the pipe reaches EOF
(``serve`` exited, however it exited) it freezes every process of the last snapshot with
SIGSTOP, adds any children they spawned meanwhile (repeating until nothing new appears), then
SIGKILLs them all — so a process cannot escape by forking during the clean-up. It then removes
the temporary data dir it was told about, and exits. Processes are identified by (pid, start
time) so a recycled pid is never hit.

Run as ``python -m kyklos.sandbox.watchdog --pid P [--remove DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import sys
from pathlib import Path

ProcKey = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields follow the last ')'.
    fields = data[data.rfind(")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _all_processes() -> dict[int, tuple[int, int]]:
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                table[int(entry)] = info
    return table


def descendants(root: int, table: dict[int, tuple[int, int]] | None = None) -> set[ProcKey]:
    """Every descendant of ``root`` as (pid, start time)."""
    table = table if table is not None else _all_processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[ProcKey] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add((child, table[child][1]))
            stack.append(child)
    return found


def _alive(key: ProcKey) -> bool:
    info = _stat(key[0])
    return info is not None and info[1] == key[1]


def kill_tree(snapshot: set[ProcKey], exclude: int) -> int:
    """Freeze, widen to late-born children, then SIGKILL every process of ``snapshot``."""
    victims = {key for key in snapshot if key[0] != exclude and _alive(key)}
    frozen: set[ProcKey] = set()
    while True:
        for key in victims - frozen:
            if _alive(key):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(key[0], signal.SIGSTOP)
            frozen.add(key)
        table = _all_processes()
        newer: set[ProcKey] = set()
        for pid, _start in frozen:
            newer |= descendants(pid, table)
        newer = {key for key in newer if key[0] != exclude} - frozen
        if not newer:
            break
        victims |= newer
    killed = 0
    for key in frozen:
        if _alive(key):
            try:
                os.kill(key[0], signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def watch(
    pid: int, remove: Path | None, interval: float = 0.5, real_node_state: Path | None = None
) -> int:
    """Snapshot ``pid``'s tree until stdin closes, then kill what is left and clean up."""
    me = os.getpid()
    own = _stat(me)
    my_key = (me, own[1] if own else 0)
    snapshot: set[ProcKey] = set()
    stdin = sys.stdin.fileno()
    while True:
        current = descendants(pid) - {my_key}
        if _stat(pid) is not None:
            # Keep processes seen earlier that may have been re-parented away already.
            snapshot = {key for key in snapshot if _alive(key)} | current
        readable, _, _ = select.select([stdin], [], [], interval)
        if readable and not os.read(stdin, 4096):
            break  # EOF: serve is gone
    kill_tree(snapshot, exclude=me)
    if real_node_state is not None:
        # serve died without restoring the host: containers (re-parented away from its tree),
        # mounts, iptables chains, the bridge and sysctls are put back from its journal. This
        # must precede removing the data dir, which the node's mounts live under.
        from kyklos.sandbox.realnode.host import restore_from_state

        with contextlib.suppress(Exception):
            restore_from_state(real_node_state, pid, lambda _line: None)
    if remove is not None:
        shutil.rmtree(remove, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m kyklos.sandbox.watchdog")
    parser.add_argument("--pid", type=int, required=True, help="the serve process to watch")
    parser.add_argument("--remove", type=Path, help="directory to delete after the clean-up")
    parser.add_argument(
        "--real-node-state", type=Path, help="restore the real node's host journal kept here"
    )
    args = parser.parse_args(argv)
    # Ignore the terminal's signals: a Ctrl-C reaches the whole foreground group, and the
    # watchdog must stay to clean up after serve, which handles the signal itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return watch(args.pid, args.remove, real_node_state=args.real_node_state)


if __name__ == "__main__":
    raise SystemExit(main())
