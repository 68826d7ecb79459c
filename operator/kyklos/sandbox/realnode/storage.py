"""Claims on the real node: the node agent's local-directory provisioner, run as a process.

The same ``standard`` default StorageClass and ``hostPath`` volumes under
``<data dir>/volumes`` as with the node agent (``kyklos.sandbox.storage``). One difference: a
real kubelet applies a pod's ``fsGroup`` only to volume types that support ownership
management, and ``hostPath`` does not, so each volume directory is made writable by every
user (sticky, like /tmp) — the chart's pods run as a non-root user.

Run as ``python -m kyklos.sandbox.realnode.storage --kubeconfig K --data-dir D --parent-pid P``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import types

from kyklos.sandbox.nodeagent import Kube
from kyklos.sandbox.pods import JsonDict
from kyklos.sandbox.storage import Provisioner, pv_manifest

log = logging.getLogger("kyklos.sandbox.realnode.storage")


class WritableVolumes(Provisioner):
    """The node agent's provisioner, with volume directories any pod user can write."""

    def provision(self, claim: JsonDict) -> None:
        """Create the claim's PV and open its directory to every user (sticky)."""
        super().provision(claim)
        path = pv_manifest(claim, self.data_dir)["spec"]["hostPath"]["path"]
        try:
            os.chmod(path, 0o1777)
        except OSError as exc:
            log.warning("storage: cannot open %s to pod users: %s", path, exc)


def main(argv: list[str] | None = None) -> int:
    """Provision until the parent (serve) dies or a signal arrives."""
    parser = argparse.ArgumentParser(prog="python -m kyklos.sandbox.realnode.storage")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: types.FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    provisioner = WritableVolumes(Kube(args.kubeconfig), args.data_dir, stopping)
    provisioner.ensure_storage_class()
    provisioner.start()
    while not stopping.wait(1.0):
        if os.getppid() != args.parent_pid:
            break
    stopping.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
