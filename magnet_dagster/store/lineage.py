"""The DuckDB lineage store.

DuckDB lets one process at a time hold a file open for writing, and several
`dagster asset materialize` processes share one `lineage.duckdb`. So the store never
keeps a connection: every read or write opens the file, does one short transaction and
closes it, retrying with backoff while another process holds the lock. Nothing slow
(LLM calls, tool execution) ever happens while a connection is open.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from magnet_dagster import config

DDL_FILES = ("schema.sql", "lineage.sql")

#: Tables whose rows belong to one partition and are replaced as a whole on rerun.
PARTITION_TABLES = frozenset(
    {
        "tool_sets",
        "functions",
        "rejected_functions",
        "graph_edges",
        "paths",
        "turns",
        "path_rejections",
        "trajectories",
        "preference_pairs",
        "splits",
    }
)
#: Tables that accumulate (a record of requests, evaluations and training runs over time).
APPEND_TABLES = frozenset({"llm_calls", "llm_cache", "eval_results", "training_runs", "training_rows"})

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")


def ddl(name: str) -> str:
    """One DDL file of `sql/`: shipped inside the package as `magnet_dagster.sql` by `pip install .`;
    an editable install (`pip install -e .`, which maps only the top package) reads the checkout's."""
    try:
        return resources.files("magnet_dagster.sql").joinpath(name).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        return (Path(__file__).resolve().parents[2] / "sql" / name).read_text(encoding="utf-8")


class StoreUnavailable(RuntimeError):
    """The store could not be reached in time (a held file lock, a lost server): retry later, not a bad row."""


def partition_deletes(tool_set: str, tables: Iterable[str], stage: str | None = None) -> list[tuple[str, list[Any]]]:
    """The DELETEs (`?` placeholders) that clear one partition's rows of `tables` before a replace.

    With `stage`, `path_rejections` (which several assets share) loses only that stage's rows.
    Raises ValueError for a table that is not per-partition. Every store runs these.
    """
    deletes = []
    for table in tables:
        if table not in PARTITION_TABLES:
            raise ValueError(f"{table} is not a per-partition table")
        if stage is not None and table == "path_rejections":
            deletes.append((f"DELETE FROM {table} WHERE tool_set = ? AND stage = ?", [tool_set, stage]))
        else:
            deletes.append((f"DELETE FROM {table} WHERE tool_set = ?", [tool_set]))
    return deletes


def _is_lock_error(exc: BaseException) -> bool:
    if isinstance(exc, StoreUnavailable):
        return True
    return isinstance(exc, duckdb.Error) and any(m in str(exc) for m in _LOCK_MARKERS)


def _json_columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND data_type = 'JSON'",
        [table],
    ).fetchall()
    return {r[0] for r in rows}


class LineageStore:
    """Row-level lineage in one DuckDB file; safe to share between processes."""

    def __init__(self, path: str | Path, lock_timeout_s: float = 120.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._ready = False

    def _being_created(self, exc: duckdb.Error) -> bool:
        """Another process has just created the file and not yet written its header (several
        workers starting at once on a new home): wait, as for a lock. An old invalid file is an error."""
        if "not a valid DuckDB database file" not in str(exc):
            return False
        try:
            return time.time() - self.path.stat().st_mtime < 10.0
        except OSError:
            return True

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file for one unit of work, waiting while another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.Error as exc:
                if not (_is_lock_error(exc) or self._being_created(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        try:
            if not self._ready:
                for name in DDL_FILES:
                    con.execute(ddl(name))
                self._ready = True
            yield con
        finally:
            con.close()

    def replace_partition(
        self,
        tool_set: str,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        stage: str | None = None,
    ) -> None:
        """Replace one partition's rows of several tables atomically (all or nothing).

        With `stage`, only rows of that stage are replaced (for tables several assets share).
        """
        deletes = partition_deletes(tool_set, tables, stage)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for (sql, params), (table, rows) in zip(deletes, tables.items()):
                    con.execute(sql, params)
                    self._insert(con, table, rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if table not in APPEND_TABLES:
            raise ValueError(f"{table} is not an append-only table")
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                self._insert(con, table, rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(rows)

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        json_cols = _json_columns(con, table)
        columns = list(rows[0].keys())
        records = [
            {c: (json.dumps(r.get(c)) if c in json_cols and r.get(c) is not None else r.get(c)) for c in columns}
            for r in rows
        ]
        frame = pd.DataFrame.from_records(records, columns=columns)
        con.register("_incoming", frame)
        cols = ", ".join(columns)
        conflict = " ON CONFLICT DO NOTHING" if table == "llm_cache" else ""
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming{conflict}")
        # Not in a `finally`: after a failed insert the transaction is aborted, and unregistering
        # would raise over the insert's own error (the connection is closed right after anyway).
        con.unregister("_incoming")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read query (SQL from our code, values as parameters) and decode JSON."""
        with self.connect() as con:
            cur = con.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            types = [str(d[1]) for d in cur.description]
            out = []
            for row in cur.fetchall():
                rec = {}
                for name, typ, value in zip(names, types, row):
                    rec[name] = json.loads(value) if typ == "JSON" and value is not None else value
                out.append(rec)
            return out

    def rows(self, table: str, tool_set: str, order_by: str | None = None) -> list[dict[str, Any]]:
        if table not in PARTITION_TABLES | APPEND_TABLES:
            raise ValueError(f"unknown table {table}")
        order = f" ORDER BY {order_by}" if order_by else ""
        return self.query(f"SELECT * FROM {table} WHERE tool_set = ?{order}", [tool_set])

    def count(self, table: str, tool_set: str) -> int:
        if table not in PARTITION_TABLES | APPEND_TABLES:
            raise ValueError(f"unknown table {table}")
        return self.query(f"SELECT count(*) AS n FROM {table} WHERE tool_set = ?", [tool_set])[0]["n"]


#: The one switch to the shared store: a Postgres URL (see `store/shared.py`); unset, the DuckDB file.
LINEAGE_URL_ENV = "MAGNET_LINEAGE_URL"


def open_lineage_store(path: str | Path | None = None) -> LineageStore:
    """The store this environment names: the shared Postgres database `MAGNET_LINEAGE_URL` when it
    is set (every worker of a deployment writes there), else the DuckDB file `path`
    (default `$MAGNET_HOME/lineage.duckdb`)."""
    url = os.environ.get(LINEAGE_URL_ENV, "").strip()
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{LINEAGE_URL_ENV}: expected a postgresql:// URL")
        from magnet_dagster.store.shared import PostgresLineageStore  # psycopg only where it is used

        return PostgresLineageStore(url)
    return LineageStore(path or config.lineage_db_path())


def rows_from(objects: Iterable[Any]) -> list[dict[str, Any]]:
    """Turn row-like objects (dicts or objects with `as_row()`) into dicts."""
    return [o if isinstance(o, dict) else o.as_row() for o in objects]
