"""What crosses into a worker pod: the typed arguments of ``kyklos worker <command>``.

The operator's pure Job builders call :meth:`WorkerArgs.to_argv`; the worker's command
line calls :meth:`WorkerArgs.from_argv` on the same model, so the flags are written once
(the field names) and pydantic checks the values on the way in. Absent optional fields
are left out of the argv.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

#: Where Kubernetes reads a container's termination message from (policy File).
TERMINATION_LOG = "/dev/termination-log"


class WorkerArgsError(ValueError):
    """The argv is not what the operator builds; the message names the flag."""


class _ArgvParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise WorkerArgsError(f"{self.prog}: {message}")


class WorkerArgs(BaseModel):
    """Base of every worker's arguments: ``--flag value`` pairs named after the fields."""

    model_config = ConfigDict(extra="forbid")

    #: The subcommand (``kyklos worker <COMMAND> ...``).
    COMMAND: ClassVar[str] = ""

    @staticmethod
    def _flag(field: str) -> str:
        return "--" + field.replace("_", "-")

    def to_argv(self) -> list[str]:
        """``[COMMAND, --flag, value, ...]`` as the worker container's args."""
        out = [self.COMMAND]
        for key, value in self.model_dump(mode="json").items():
            if value is not None:
                out += [self._flag(key), str(value)]
        return out

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> Self:
        """Parse what :meth:`to_argv` produced (without the COMMAND); values are validated."""
        parser = _ArgvParser(prog=f"kyklos worker {cls.COMMAND}", add_help=False)
        for key, info in cls.model_fields.items():
            parser.add_argument(cls._flag(key), dest=key, required=info.is_required())
        values = {k: v for k, v in vars(parser.parse_args(list(argv))).items() if v is not None}
        return cls.model_validate(values)


class _DataWorkerArgs(WorkerArgs):
    """What the profile and drift workers share: whose data, where reports go."""

    spec: str = Field(description="The owner's spec as JSON (the worker validates it).")
    namespace: str
    name: str
    artifacts: str = Field(description="Artifact store URI.")
    termination_log: str = TERMINATION_LOG
    seed: int | None = Field(default=None, description="Seed of the row sample (default 0).")


class ProfileArgs(_DataWorkerArgs):
    """``kyklos worker profile``: validate, version and profile a Dataset source."""

    COMMAND: ClassVar[str] = "profile"


class DriftArgs(_DataWorkerArgs):
    """``kyklos worker drift``: compare current data with a Dataset's reference."""

    COMMAND: ClassVar[str] = "drift"

    reference_profile: str
    reference_sample: str
    current_uri: str | None = Field(default=None, description="URI or glob of current files.")
    current_sample: str | None = Field(default=None, description="A current Dataset's sample.")
    current_format: Literal["csv", "parquet", "jsonl"] | None = None
    window: int | None = Field(default=None, ge=1, description="Latest N files of current_uri.")
    check_id: str
