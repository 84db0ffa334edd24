"""A crash-safe record of LLM calls, kept off the request's critical path.

Each client appends one JSON line per call to its own journal file (held under an
exclusive `flock` while the client lives) and moves the lines into DuckDB when it closes.
A killed run leaves its journal behind; the next client ingests it before its first call,
so nothing already paid for is paid again and the DuckDB lock is never held during calls.

Ingest must never block a later run: a line the store refuses (one bad line once failed
every LLM run in its home) is moved, verbatim, to `quarantine/<journal name>` with a
warning, and the rest of the journal is ingested.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magnet_dagster.llm.reply_guard import scrub_text
from magnet_dagster.store.lineage import LineageStore, _is_lock_error

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"


class CallJournal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        self._file = open(self.path, "ab")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def write(self, table: str, row: dict[str, Any]) -> None:
        self._file.write(journal_line(table, row))
        self._file.flush()

    def close_into(self, store: LineageStore) -> IngestReport:
        """Release the journal and ingest it (with any orphans) into the store."""
        if not self._file.closed:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
        return ingest_journals(self.directory, store)


def journal_line(table: str, row: dict[str, Any]) -> bytes:
    """One UTF-8 line; a lone surrogate anywhere becomes U+FFFD, so the store can take the line."""
    text = json.dumps({"table": table, "row": row}, ensure_ascii=False, default=str)
    return (scrub_text(text) + "\n").encode("utf-8")


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did: rows moved into the store, and lines set aside in quarantine files."""

    moved: int = 0
    quarantined_lines: int = 0
    quarantined: tuple[Path, ...] = ()

    def __add__(self, other: IngestReport) -> IngestReport:
        files = self.quarantined + tuple(p for p in other.quarantined if p not in self.quarantined)
        return IngestReport(self.moved + other.moved, self.quarantined_lines + other.quarantined_lines, files)


@dataclass
class _Parsed:
    """A journal file split into rows to ingest (with their raw lines) and lines already refused."""

    rows: dict[str, list[tuple[dict[str, Any], bytes]]] = field(default_factory=dict)
    refused: list[tuple[bytes, str]] = field(default_factory=list)


def _parse_journal(data: bytes) -> _Parsed:
    """Group lines by table; a line that is not a journal entry is refused with its reason.

    A last line without its newline was cut by a crash: it is dropped, and its call is
    simply made again.
    """
    parsed = _Parsed()
    lines = data.split(b"\n")
    if lines and lines[-1]:
        log.debug("dropping a journal line cut by a crash (%d bytes)", len(lines[-1]))
    for raw in lines[:-1]:
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw.decode("utf-8"))
            table, row = entry["table"], entry["row"]
            if not isinstance(table, str) or not isinstance(row, dict):
                raise ValueError("not a {table, row} entry")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            parsed.refused.append((raw, f"unreadable line: {type(exc).__name__}: {exc}"[:300]))
            continue
        parsed.rows.setdefault(table, []).append((row, raw))
    return parsed


def append_isolating(store: LineageStore, table: str, rows: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Append `rows`, one bulk insert first; return index -> error for the rows the store refused.

    Only when the bulk insert fails are the rows split, halving down to single rows, so a
    few bad rows cost a few inserts and the good ones still land. A lock timeout is not a
    bad row: it is raised and the journal stays for the next ingest.
    """
    refused: dict[int, str] = {}
    pending = [(0, len(rows))] if rows else []
    while pending:
        lo, hi = pending.pop()
        try:
            store.append(table, rows[lo:hi])
        except Exception as exc:
            if _is_lock_error(exc):
                raise
            if hi - lo == 1:
                refused[lo] = f"{type(exc).__name__}: {exc}"[:300]
            else:
                mid = (lo + hi) // 2
                pending += [(mid, hi), (lo, mid)]
    return refused


def quarantine(path: Path, lines: Sequence[bytes]) -> Path:
    """Append `lines` to `quarantine/<journal name>` beside the journal; return that file."""
    target = path.parent / QUARANTINE_DIR / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "ab") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))
    return target


def _ingest_file(path: Path, store: LineageStore) -> IngestReport:
    parsed = _parse_journal(path.read_bytes())
    moved = 0
    refused = list(parsed.refused)
    for table, entries in parsed.rows.items():
        bad = append_isolating(store, table, [row for row, _ in entries])
        moved += len(entries) - len(bad)
        refused += [(entries[i][1], f"{table}: {reason}") for i, reason in sorted(bad.items())]
    if not refused:
        return IngestReport(moved)
    target = quarantine(path, [raw for raw, _ in refused])
    log.warning(
        "quarantined %d journal line(s) the lineage store could not take to %s "
        "(first: %s); the other %d row(s) were ingested",
        len(refused),
        target,
        refused[0][1],
        moved,
    )
    return IngestReport(moved, len(refused), (target,))


def ingest_journals(directory: Path, store: LineageStore) -> IngestReport:
    """Move every journal no live client holds into the store.

    Returns rows moved and quarantine files written; a journal is removed once read,
    whatever its lines held, so no journal can fail the next run too.
    """
    report = IngestReport()
    if not directory.is_dir():
        return report
    for path in sorted(directory.glob("*.jsonl")):
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            continue
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live client owns it
            if not path.exists():
                continue
            report += _ingest_file(path, store)
            path.unlink()
    return report
