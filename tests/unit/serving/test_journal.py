"""The request log's crash-safe journal: a proxy killed outright has its loss counted."""

from __future__ import annotations

from pathlib import Path

from kyklos.serving.journal import Journal


def opened(directory: Path) -> Journal:
    """A journal as the proxy opens it: recovered first."""
    journal = Journal(directory)
    journal.recover(lambda uri: False)
    return journal


def test_a_fresh_journal_reports_no_loss(tmp_path: Path) -> None:
    assert Journal(tmp_path / "j").recover(lambda uri: True) == 0


def test_buffered_and_never_settled_records_are_reported_once(tmp_path: Path) -> None:
    journal = opened(tmp_path)
    for _ in range(5):
        journal.record_added()
    journal.settle(2)
    # A second mapping of the same file, as the next incarnation opens it: the first
    # one's counts are in the file without any flush or close.
    after = Journal(tmp_path)
    assert after.recover(lambda uri: False) == 3
    assert Journal(tmp_path).recover(lambda uri: False) == 0  # then it starts from zero


def test_a_pending_flush_whose_file_reached_the_store_is_not_lost(tmp_path: Path) -> None:
    journal = opened(tmp_path)
    for _ in range(4):
        journal.record_added()
    journal.begin_flush("file:///store/a.parquet", 4)  # killed after the write, before settle
    assert Journal(tmp_path).recover(lambda uri: uri == "file:///store/a.parquet") == 0


def test_a_pending_flush_whose_file_is_missing_is_lost(tmp_path: Path) -> None:
    journal = opened(tmp_path)
    for _ in range(4):
        journal.record_added()
    journal.begin_flush("file:///store/a.parquet", 4)  # killed during the write
    assert Journal(tmp_path).recover(lambda uri: False) == 4


def test_a_settled_flush_whose_pending_note_remained_is_not_credited_twice(
    tmp_path: Path,
) -> None:
    journal = opened(tmp_path)
    for _ in range(6):
        journal.record_added()
    journal.begin_flush("file:///store/a.parquet", 4)
    note = journal.pending_path.read_text()
    journal.settle(4)
    journal.pending_path.write_text(note)  # killed after settle, before the note's unlink
    assert Journal(tmp_path).recover(lambda uri: True) == 2


def test_a_garbage_journal_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "request-log.journal").write_bytes(b"x" * 24)
    assert Journal(tmp_path).recover(lambda uri: True) == 0
