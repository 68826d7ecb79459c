"""The churn example's model server: ``python -m kyklos.examples.serve [--port 8080]``.

Loads the model JSON at ``KYKLOS_MODEL_URI`` (``file://``, ``pvc://<claim>/<path>`` under
``$KYKLOS_PVC_ROOT``, or a plain path; a directory URI means its model.json), then serves:

- ``GET /healthz``: 200 ``{"status": "ok", "model": ..., "version": ...}`` -- the socket is
  bound only after the model loaded, so the readiness probe cannot pass before;
- ``POST /predict``: body ``{"rows": [{"tenure_months": 3, "contract": "one-year", ...}]}``
  (or a bare list of rows) -> ``{"probabilities": [...], "predictions": [0|1, ...]}``;
  400 with ``{"error": ...}`` naming the row/field for bad input.

Port: ``--port``, else ``KYKLOS_SERVER_PORT`` (set by Kyklos when its proxy sidecar
listens on the Service port in front of the server), else ``PORT``, else 8080.

Misbehaviour for canary-analysis stories and walkthroughs (environment, default off):
``KYKLOS_EXAMPLE_ERROR_RATE`` (0-1: that share of /predict requests answers 500,
deterministically every n-th), ``KYKLOS_EXAMPLE_DELAY_SECONDS`` (added to every /predict),
``KYKLOS_EXAMPLE_CONSTANT_PREDICTION`` (every prediction is this class).

A model that cannot be loaded is a crash (exit 1, one line on stderr): the pod never
becomes Ready, and a ModelDeployment's canary is rolled back.

The listening socket sets SO_REUSEPORT: in the sandbox every "pod" is a local process on
the same host, so the stable and canary replicas share the port and the kernel spreads
connections over them -- on a real cluster each pod has its own network namespace and the
option changes nothing. SIGTERM stops the server cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kyklos.examples.model import DataError, Model
from kyklos.examples.uris import UriError, model_file

MAX_BODY = 1 << 20


class Faults:
    """Deliberate misbehaviour (see the module docstring), read from the environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.error_rate = float(env.get("KYKLOS_EXAMPLE_ERROR_RATE") or 0)
        self.delay = float(env.get("KYKLOS_EXAMPLE_DELAY_SECONDS") or 0)
        constant = env.get("KYKLOS_EXAMPLE_CONSTANT_PREDICTION")
        self.constant = int(constant) if constant not in (None, "") else None
        self._count = 0
        self._errors = 0
        self._lock = threading.Lock()

    def should_fail(self) -> bool:
        """Whether this request fails: exactly ``error_rate`` of requests so far, spread out."""
        if self.error_rate <= 0:
            return False
        with self._lock:
            self._count += 1
            if self._errors < int(self._count * self.error_rate):
                self._errors += 1
                return True
            return False


class ModelServer(ThreadingHTTPServer):
    """An HTTP server holding one loaded model."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        model: Model,
        version: str,
        faults: Faults | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.faults = faults or Faults()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        if hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class Handler(BaseHTTPRequestHandler):
    """/healthz and /predict."""

    server: ModelServer

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/healthz":
            self._reply(
                HTTPStatus.OK,
                {"status": "ok", "model": self.server.model.target, "version": self.server.version},
            )
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/predict":
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
            return
        faults = self.server.faults
        if faults.delay:
            time.sleep(faults.delay)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"body must be 1..{MAX_BODY} bytes"})
            return
        try:
            body = json.loads(self.rfile.read(length))
            rows = body.get("rows") if isinstance(body, dict) else body
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise DataError('expected {"rows": [{...}, ...]} or a list of objects')
            probabilities = self.server.model.predict_proba(rows)
        except json.JSONDecodeError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"body is not JSON: {exc.msg}"})
            return
        except DataError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        if faults.should_fail():
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "injected failure"})
            return
        predictions = [int(p >= 0.5) for p in probabilities]
        if faults.constant is not None:
            predictions = [faults.constant] * len(predictions)
        self._reply(
            HTTPStatus.OK,
            {
                "probabilities": [round(p, 6) for p in probabilities],
                "predictions": predictions,
                "version": self.server.version,
            },
        )


def load_model(uri: str) -> Model:
    """Read and check the model JSON at a URI."""
    path = model_file(uri)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{uri}: no model at {path}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a model object")
    try:
        return Model.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: malformed model ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    """Load the model, then serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m kyklos.examples.serve")
    parser.add_argument("--host", default="0.0.0.0")
    default_port = os.environ.get("KYKLOS_SERVER_PORT") or os.environ.get("PORT") or "8080"
    parser.add_argument("--port", type=int, default=int(default_port))
    args = parser.parse_args(argv)
    uri = os.environ.get("KYKLOS_MODEL_URI", "")
    try:
        if not uri:
            raise DataError("KYKLOS_MODEL_URI is not set")
        model = load_model(uri)
        version = os.environ.get("KYKLOS_MODEL_VERSION") or uri
        server = ModelServer((args.host, args.port), model, version)
    except (DataError, UriError) as exc:
        print(f"kyklos.examples.serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kyklos.examples.serve: port {args.port}: {exc.strerror}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"serving {uri} on {args.host}:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
