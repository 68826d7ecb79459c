"""What crosses the boundary of ``kyklos worker fetch-model``: its arguments and its result.

The serving pod's init container copies a model from an object store (s3, gs, http(s)) into
an emptyDir; the model server then reads ``KYKLOS_MODEL_PATH``. The operator builds the
arguments with ``FetchModelArgs.to_argv``; the worker parses them with ``from_argv``. The
result goes into the init container's termination message (``ModelFetchSummary``), where
the rollout reads why a fetch failed. Messages name the store, never its credentials.
"""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import Field

from kyklos.api.common import KyklosModel
from kyklos.api.worker import TERMINATION_LOG, WorkerArgs

#: The ``kyklos worker`` subcommand.
COMMAND = "fetch-model"
#: Reason of a failed fetch, in the termination message and in the rollout's condition.
MODEL_FETCH_FAILED = "ModelFetchFailed"
#: A summary is at most this long (the kubelet keeps 4 KiB of a termination message).
MESSAGE_LIMIT = 1024


class FetchModelArgs(WorkerArgs):
    """Arguments of ``kyklos worker fetch-model``."""

    COMMAND: ClassVar[str] = COMMAND
    PROG: ClassVar[str] = f"kyklos worker {COMMAND}"

    uri: str = Field(description="The model's URI (a file or a directory), s3/gs/http(s)/file.")
    dest: str = Field(description="Local directory the model is copied into.")
    termination_log: str = Field(
        default=TERMINATION_LOG, description="Where the summary is written."
    )


class ModelFetchSummary(KyklosModel):
    """Result of ``kyklos worker fetch-model`` (its termination message)."""

    ok: bool = Field(description="Whether the model was copied.")
    store: str = Field(description="The store read from (URI with credentials masked).")
    files: int = Field(default=0, description="Files copied.")
    bytes: int = Field(default=0, description="Bytes copied.")
    reason: str | None = Field(default=None, description="ModelFetchFailed when ok is false.")
    message: str | None = Field(default=None, description="Why the fetch failed.")

    def to_termination_message(self) -> str:
        """Compact JSON (the message is clipped to fit the kubelet's limit)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if self.message and len(self.message) > MESSAGE_LIMIT:
            data["message"] = self.message[: MESSAGE_LIMIT - 3] + "..."
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_termination_message(cls, text: str) -> ModelFetchSummary | None:
        """The summary, or None when the text is not one (e.g. the kubelet's own message)."""
        try:
            return cls.model_validate_json(text)
        except ValueError:
            return None
