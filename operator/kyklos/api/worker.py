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


class FlagsModel(BaseModel):
    """Arguments of a Kyklos program as ``--flag value`` pairs named after the fields.

    The operator builds them (:meth:`to_flags`) into a pod; the program parses them back
    (:meth:`from_flags`) into the same model, which validates the values.
    """

    #: The program, for error messages (``kyklos proxy``, ``kyklos worker drift``).
    PROG: ClassVar[str] = "kyklos"

    @staticmethod
    def _flag(field: str) -> str:
        return "--" + field.replace("_", "-")

    def to_flags(self) -> list[str]:
        """``[--flag, value, ...]``; unset (None) fields are left out."""
        out: list[str] = []
        for key, value in self.model_dump(mode="json").items():
            if value is not None:
                out += [self._flag(key), str(value)]
        return out

    @classmethod
    def from_flags(cls, argv: Sequence[str]) -> Self:
        """Parse what :meth:`to_flags` produced; a missing or unknown flag is named."""
        parser = _ArgvParser(prog=cls.PROG, add_help=False)
        for key, info in cls.model_fields.items():
            parser.add_argument(cls._flag(key), dest=key, required=info.is_required())
        values = {k: v for k, v in vars(parser.parse_args(list(argv))).items() if v is not None}
        return cls.model_validate(values)


class WorkerArgs(FlagsModel):
    """Base of every worker's arguments (``kyklos worker <COMMAND> --flag value ...``)."""

    model_config = ConfigDict(extra="forbid")

    #: The subcommand (``kyklos worker <COMMAND> ...``).
    COMMAND: ClassVar[str] = ""

    def to_argv(self) -> list[str]:
        """``[COMMAND, --flag, value, ...]`` as the worker container's args."""
        return [self.COMMAND, *self.to_flags()]

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> Self:
        """Parse what :meth:`to_argv` produced (without the COMMAND); values are validated."""
        return cls.from_flags(argv)


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
    PROG: ClassVar[str] = "kyklos worker profile"


class DriftArgs(_DataWorkerArgs):
    """``kyklos worker drift``: compare current data with a Dataset's reference."""

    COMMAND: ClassVar[str] = "drift"
    PROG: ClassVar[str] = "kyklos worker drift"

    reference_profile: str
    reference_sample: str
    current_uri: str | None = Field(default=None, description="URI or glob of current files.")
    current_sample: str | None = Field(default=None, description="A current Dataset's sample.")
    current_format: Literal["csv", "parquet", "jsonl"] | None = None
    window: int | None = Field(default=None, ge=1, description="Latest N files of current_uri.")
    check_id: str
