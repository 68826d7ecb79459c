"""What crosses the serving data plane's process boundaries.

- :class:`ProxySettings`: the arguments of ``kyklos proxy`` (built by the operator into the
  serving pod's sidecar, parsed by the proxy): ``to_flags`` / ``from_flags``.
- :class:`RequestRecord`: one row of a request log. The proxy writes rows as Parquet files
  ``<artifacts>/<namespace>/ModelDeployment/<name>/requests/<revision>/<start>-<pod>-<seq>.parquet``
  (``<start>``: UTC ``YYYYmmddTHHMMSSffffff`` of the file's first request, so a window
  selects files by name); ``kyklos worker analyze`` reads them back with ``from_row``.
- :class:`AnalysisSummary`: the termination message of ``kyklos worker analyze`` (at most
  4 KiB), which the operator copies into ``status.analysis[]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kyklos.api.deployment import AnalysisRecord, AnalysisSamples, CheckResult, Verdict
from kyklos.api.worker import FlagsModel, WorkerArgs

#: The kubelet keeps at most 4096 bytes of a termination message.
MAX_SUMMARY_BYTES = 4096
#: Where request logs live under the artifact store.
REQUESTS_DIR = "requests"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ProxySettings(_Wire, FlagsModel):
    """Everything ``kyklos proxy`` needs, passed as command-line arguments."""

    PROG: ClassVar[str] = "kyklos proxy"

    listen_port: int = Field(ge=1, le=65535, description="Port of the Service (runtime.port).")
    server_port: int = Field(ge=1, le=65535, description="Pod-local port of the model server.")
    metrics_port: int = Field(ge=0, le=65535, description="Port of /metrics (0: none).")
    revision: str = Field(min_length=1, max_length=64)
    health_path: str = Field(default="/healthz", pattern=r"^/")
    namespace: str = ""
    name: str = ""
    pod: str = Field(default="", description="Pod name (request-log file names).")
    artifacts: str | None = Field(default=None, description="Artifact store URI (None: no logs).")
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    flush_seconds: float = Field(default=10.0, gt=0.0)
    max_body_bytes: int = Field(default=65536, ge=0)
    max_buffer_records: int = Field(default=100_000, ge=1)
    upstream_timeout_seconds: float = Field(default=30.0, gt=0.0)
    host: str = "0.0.0.0"
    journal_dir: str = Field(
        default="",
        description="Directory of the crash-safe journal of unflushed records (empty: none).",
    )


class RequestRecord(_Wire):
    """One request as the proxy saw it (one row of a request log)."""

    time: datetime = Field(description="When the request arrived (UTC).")
    revision: str = Field(description="Revision of the pod that answered.")
    method: str
    path: str
    code: int = Field(description="HTTP status returned to the client (502/504 by the proxy).")
    latency_seconds: float = Field(ge=0.0)
    #: Sampled bodies: JSON text when the body was JSON, else None (see *_raw).
    request_json: str | None = None
    response_json: str | None = None
    #: A body that was not JSON, kept as bytes (size-capped).
    request_raw: bytes | None = None
    response_raw: bytes | None = None
    error: str | None = Field(default=None, description="The proxy's cause for a 502/504.")

    def to_row(self) -> dict[str, Any]:
        """A dict of plain values, one column per field (snake_case names)."""
        return self.model_dump()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Read a row back."""
        return cls.model_validate(dict(row))

    def request_body(self) -> Any:
        """The decoded JSON request body, or None."""
        return None if self.request_json is None else json.loads(self.request_json)

    def response_body(self) -> Any:
        """The decoded JSON response body, or None."""
        return None if self.response_json is None else json.loads(self.response_json)


class AnalysisSummary(_Wire):
    """The result of ``kyklos worker analyze`` (its termination message)."""

    ok: bool = Field(description="False when the analysis could not run at all.")
    verdict: Verdict
    samples: AnalysisSamples = Field(default_factory=AnalysisSamples)
    checks: list[CheckResult] = Field(default_factory=list)
    start_time: datetime | None = None
    end_time: datetime | None = None
    message: str | None = None

    def to_termination_message(self) -> str:
        """JSON of at most MAX_SUMMARY_BYTES (messages shortened to fit)."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode()) <= MAX_SUMMARY_BYTES:
            return text
        short = self.model_copy(
            update={
                "message": (self.message or "")[:256] or None,
                "checks": [c.model_copy(update={"message": None}) for c in self.checks],
            }
        )
        return short.model_dump_json(by_alias=True, exclude_none=True)[:MAX_SUMMARY_BYTES]

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a termination message (ValueError when it is not one)."""
        return cls.model_validate_json(text)

    def to_record(self, step: int, revision: str | None) -> AnalysisRecord:
        """The status record of this analysis at canary ``step``."""
        return AnalysisRecord(
            step=step,
            revision=revision,
            start_time=self.start_time,
            end_time=self.end_time,
            samples=self.samples,
            checks=self.checks or None,
            verdict=self.verdict,
            message=(self.message or "")[:1024] or None,
        )


class AnalyzeArgs(WorkerArgs):
    """The arguments of ``kyklos worker analyze`` (built by the operator into the Job)."""

    COMMAND: ClassVar[str] = "analyze"
    PROG: ClassVar[str] = "kyklos worker analyze"

    analysis: str = Field(description="The step's Analysis as JSON.")
    namespace: str
    name: str
    artifacts: str
    canary_revision: str
    stable_revision: str
    step: int = Field(ge=0)
    window_end: datetime
    flush_seconds: float = Field(default=10.0, gt=0.0)
    termination_log: str = "/dev/termination-log"
