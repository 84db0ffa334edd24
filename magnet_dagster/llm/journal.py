"""A crash-safe record of LLM calls, kept off the request's critical path.

Each client appends one JSON line per call to its own journal file (held under an
exclusive `flock` while the client lives) and moves the lines into DuckDB when it closes.
A killed run leaves its journal behind; the next client ingests it before its first call,
so nothing already paid for is paid again and the DuckDB lock is never held during calls.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from pathlib import Path
from typing import Any

from magnet_dagster.store.lineage import LineageStore


class CallJournal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        self._file = open(self.path, "a", encoding="utf-8")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def write(self, table: str, row: dict[str, Any]) -> None:
        self._file.write(json.dumps({"table": table, "row": row}, default=str) + "\n")
        self._file.flush()

    def close_into(self, store: LineageStore) -> int:
        """Release the journal and ingest it (with any orphans) into the store."""
        if not self._file.closed:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
        return ingest_journals(self.directory, store)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash: its call is simply made again
    return entries


def ingest_journals(directory: Path, store: LineageStore) -> int:
    """Move every journal no live client holds into the store; return rows moved."""
    moved = 0
    if not directory.is_dir():
        return 0
    for path in sorted(directory.glob("*.jsonl")):
        try:
            handle = open(path, "r+", encoding="utf-8")
        except FileNotFoundError:
            continue
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live client owns it
            if not path.exists():
                continue
            entries = _read_lines(path)
            by_table: dict[str, list[dict[str, Any]]] = {}
            for entry in entries:
                by_table.setdefault(entry["table"], []).append(entry["row"])
            for table, rows in by_table.items():
                store.append(table, rows)
            moved += len(entries)
            path.unlink()
    return moved
