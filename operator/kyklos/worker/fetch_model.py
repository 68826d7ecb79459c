"""``kyklos worker fetch-model``: copy a model from an object store into a local directory.

Runs as the init container of a serving pod (KServe's storage-initializer pattern). It reads
through fsspec, so every store the worker reads data from works here too (s3 and gs with the
image's extras, credentials from the environment the pod's ``envFrom`` gives only this
container). A URI naming a directory is copied recursively; a file lands under its own name.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import fsspec

from kyklos.api.modelfetch import MODEL_FETCH_FAILED, FetchModelArgs, ModelFetchSummary
from kyklos.worker.io import describe_error, redact


def fetch_model(uri: str, dest: str) -> ModelFetchSummary:
    """Copy the model at ``uri`` into ``dest``; the summary says what was copied or why not."""
    store = redact(uri)
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        target = Path(dest)
        target.mkdir(parents=True, exist_ok=True)
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", str(target) + "/", recursive=True)
        else:
            fs.get(path, str(target / Path(path.rstrip("/")).name))
    except FileNotFoundError:
        return _failed(store, f"cannot fetch the model from {store}: no such file")
    except Exception as err:  # any store error: one line naming the store, never a secret
        return _failed(
            store,
            f"cannot fetch the model from {store}: {type(err).__name__}: {describe_error(err)}",
        )
    files = [p for p in Path(dest).rglob("*") if p.is_file()]
    if not files:
        return _failed(store, f"cannot fetch the model from {store}: nothing there")
    return ModelFetchSummary(
        ok=True, store=store, files=len(files), bytes=sum(p.stat().st_size for p in files)
    )


def _failed(store: str, message: str) -> ModelFetchSummary:
    return ModelFetchSummary(
        ok=False, store=store, reason=MODEL_FETCH_FAILED, message=redact(message)
    )


def main(argv: Sequence[str]) -> int:
    """Run the command; 0 when the model was copied, 1 otherwise."""
    args = FetchModelArgs.from_argv(argv)
    summary = fetch_model(args.uri, args.dest)
    text = summary.to_termination_message()
    print(text, flush=True)
    try:
        with open(args.termination_log, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as err:
        print(f"warning: cannot write {args.termination_log}: {err.strerror}", file=sys.stderr)
    if not summary.ok:
        print(f"error: {summary.reason}: {summary.message}", file=sys.stderr)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
