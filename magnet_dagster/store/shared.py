"""The shared lineage store: the same tables in one PostgreSQL database that many workers write at once.

`MAGNET_LINEAGE_URL=postgresql://user:password@host:5432/db` selects it (`open_lineage_store`);
unset, the store is the DuckDB file under `MAGNET_HOME`.

Why Postgres through psycopg, and not DuckLake or DuckDB's ATTACH of Postgres. Measured with
`python -m tests.store.measure_stores 5000` (four runs on a shared 2-core machine; seconds, DuckDB
file / Postgres): one replace_partition of 5,000 turn rows 0.15-0.25 / 0.12-0.14; reading them
back 0.08-0.13 / 0.08-0.12; appending 5,000 llm_cache rows 0.15-0.20 / 0.07-0.16; 200 single-key
cache lookups 4.5-6.6 / 0.03-0.23 (the file is opened per unit of work, a Postgres connection is
kept); four processes each replacing their partition three times at once 3.5-4.9 / 1.5-4.0 (on
two cores both are CPU-bound; the file admits one writer at a time, and only on one machine: a
DuckDB file cannot be shared between hosts at all, which is what the shared store is for).

- DuckDB 2.0.1 (installed) cannot load either extension offline: PyPI's `duckdb-extension-ducklake`
  / `duckdb-extension-postgres` are built for 1.5.5 (`LOAD` refuses them; with
  `allow_extensions_metadata_mismatch` the Postgres one lacks its 2.0 entry point and DuckLake's
  crashes the process), and `INSTALL` needs the network. Pinning DuckDB back to 1.5.5 for the
  whole project to reach them would trade the embedded default for the optional store.
- Postgres does what the store needs natively: row locks instead of one writer per file, so four
  processes replacing four partitions run side by side (the DuckDB file serialises them); a
  per-partition replace is DELETE + COPY in one transaction; `llm_cache` keeps its primary key
  and `ON CONFLICT DO NOTHING`; an index answers a per-key cache lookup without a scan.
- DuckLake would put a catalog database (Postgres anyway) *and* Parquet files on shared storage
  behind every write; the store's writes are many small commits (a journal flush, one stage of
  one partition), which DuckLake turns into small files to inline or compact. Its strength, large
  scans over object storage, is not what the pipeline asks of its lineage.

The callers' SQL is DuckDB's dialect (`list_contains`, `x::INT`, `GROUP BY ALL`, `?` and `$1`
parameters, JSON columns). Rather than write every query twice, each one is transpiled once
(sqlglot, cached) to Postgres, with DuckDB's semantics kept where they differ (NULLS LAST
ordering, NULL-safe `list_contains`); `GROUP BY ALL` is expanded to the non-aggregate columns.
The one view whose DuckDB form has no Postgres equivalent (`training_example_lineage`: lists of
structs) is written for Postgres below, with the same columns, as JSON lists of objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import PosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import sqlglot
from psycopg.adapt import Loader
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import TokenType

from magnet_dagster.store.lineage import (
    APPEND_TABLES,
    DDL_FILES,
    PARTITION_TABLES,
    LineageStore,
    StoreUnavailable,
    ddl,
    partition_deletes,
)

#: Postgres form of sql/lineage.sql's view: the same columns; lists of structs become JSON lists.
LINEAGE_VIEW = """
DROP VIEW IF EXISTS training_example_lineage;
CREATE VIEW training_example_lineage AS
WITH traj AS (
    SELECT t.trajectory_id, t.tool_set, t.run_id AS trajectory_run_id, t.path_id,
           t.turn_ids, t.llm_call_ids AS trajectory_llm_call_ids
    FROM trajectories t
),
turn_rows AS (
    SELECT tr.trajectory_id,
           json_agg(json_build_object('turn_id', u.turn_id, 'turn_index', u.turn_index, 'kind', u.kind,
                                      'query', u.query, 'function_ids', u.function_ids,
                                      'llm_call_ids', u.llm_call_ids) ORDER BY u.turn_index) AS turns
    FROM traj tr JOIN turns u
      ON u.tool_set = tr.tool_set AND u.turn_id = ANY(tr.turn_ids)
    GROUP BY tr.trajectory_id
),
path_rows AS (
    SELECT tr.trajectory_id, p.run_id AS path_run_id, p.walk, p.edge_ids, p.operations,
           p.llm_call_ids AS path_llm_call_ids
    FROM traj tr JOIN paths p ON p.tool_set = tr.tool_set AND p.path_id = tr.path_id
),
edge_rows AS (
    SELECT pr.trajectory_id,
           json_agg(json_build_object('edge_id', e.edge_id, 'source_id', e.source_id,
                                      'target_id', e.target_id, 'relation', e.relation,
                                      'llm_call_id', e.llm_call_id)) AS edges
    FROM path_rows pr JOIN traj tr ON tr.trajectory_id = pr.trajectory_id
    JOIN graph_edges e ON e.tool_set = tr.tool_set AND e.edge_id = ANY(pr.edge_ids)
    GROUP BY pr.trajectory_id
),
function_rows AS (
    SELECT pr.trajectory_id, array_agg(DISTINCT f.name) AS function_names
    FROM path_rows pr JOIN traj tr ON tr.trajectory_id = pr.trajectory_id
    JOIN functions f ON f.tool_set = tr.tool_set AND f.function_id = ANY(pr.walk)
    GROUP BY pr.trajectory_id
)
SELECT tr.trajectory_id, tr.tool_set, s.split, tr.trajectory_run_id, tr.path_id,
       pr.path_run_id, pr.operations, fr.function_names, pr.walk, er.edges, ur.turns,
       tr.trajectory_llm_call_ids, pr.path_llm_call_ids
FROM traj tr
LEFT JOIN splits s ON s.tool_set = tr.tool_set AND s.trajectory_id = tr.trajectory_id
LEFT JOIN path_rows pr ON pr.trajectory_id = tr.trajectory_id
LEFT JOIN edge_rows er ON er.trajectory_id = tr.trajectory_id
LEFT JOIN function_rows fr ON fr.trajectory_id = tr.trajectory_id
LEFT JOIN turn_rows ur ON ur.trajectory_id = tr.trajectory_id;
"""

#: Indexes for a store many partitions share: a partition's replace and reads touch its own rows
#: only, however many other tool sets the database holds.
INDEXES = "\n".join(
    [f"CREATE INDEX IF NOT EXISTS {t}_tool_set ON {t} (tool_set);" for t in sorted(PARTITION_TABLES)]
    + [
        "CREATE INDEX IF NOT EXISTS llm_cache_backend_model ON llm_cache (backend, model);",
        "CREATE INDEX IF NOT EXISTS llm_calls_tool_set ON llm_calls (tool_set, run_id);",
        "CREATE INDEX IF NOT EXISTS eval_results_tool_set ON eval_results (tool_set, run_id);",
    ]
)

#: Advisory lock ids: one for DDL; a partition's replace locks hash(tool_set) in its own namespace.
_DDL_LOCK = 0x6D61676E  # "magn"
_PARTITION_LOCK_NS = 0x6C696E65  # "line"


_DUCKDB = Dialect.get_or_raise("duckdb")


def _expand_group_by_all(select: exp.Select) -> None:
    group = select.args.get("group")
    if not isinstance(group, exp.Group) or not group.args.get("all"):
        return
    keys = [
        exp.Literal.number(i)
        for i, column in enumerate(select.expressions, start=1)
        if column.find(exp.AggFunc) is None and not isinstance(column, exp.Star)
    ]
    select.set("group", exp.Group(expressions=keys) if keys else None)


def _number_placeholders(sql: str) -> str:
    """`?` -> `$1`, `$2`, ... in the order they are written (the tokenizer skips strings and comments)."""
    tokens = _DUCKDB.tokenize(sql)
    marks = [t for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
    if not marks:
        return sql
    if any(t.token_type == TokenType.PARAMETER for t in tokens):
        raise ValueError("mixing `?` and `$n` parameters in one statement")
    parts, last = [], 0
    for i, t in enumerate(marks, start=1):
        parts += [sql[last : t.start], f"${i}"]
        last = t.end + 1
    return "".join(parts) + sql[last:]


@lru_cache(maxsize=512)
def to_postgres(sql: str) -> str:
    """One statement (or several, `;`-separated) in DuckDB's dialect, as Postgres runs it.

    `?` parameters are numbered in order (`$1`, `$2`, ...); `$n` parameters stay as they are.
    """
    out = []
    for tree in sqlglot.parse(_number_placeholders(sql), read="duckdb"):
        if tree is None:
            continue
        for select in tree.find_all(exp.Select):
            _expand_group_by_all(select)
        for mark in list(tree.find_all(exp.Placeholder)):
            mark.replace(exp.var(f"${mark.this}"))  # native parameters: the server binds them, no `%` escaping
        out.append(tree.sql(dialect="postgres"))
    return ";\n".join(out)


def _collate_c(tree: exp.Expr) -> None:
    """Text columns compare and sort by code point, as DuckDB's do, whatever the database's locale:
    the same `ORDER BY` gives the same order (and the same seeded choices downstream) on both stores."""
    for column in tree.find_all(exp.ColumnDef):
        kind = column.args.get("kind")
        if kind is None:
            continue
        base = kind.expressions[0] if kind.is_type(exp.DataType.Type.ARRAY) and kind.expressions else kind
        if base.is_type(exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT):
            collate = exp.ColumnConstraint(kind=exp.CollateColumnConstraint(this=exp.Identifier(this="C", quoted=True)))
            column.set("constraints", [collate, *column.args.get("constraints", [])])


def schema_sql() -> str:
    """The whole DDL for Postgres: sql/schema.sql transpiled (text columns in code-point order),
    the lineage view (hand-written, see above), then the indexes."""
    statements = []
    for tree in sqlglot.parse(ddl(DDL_FILES[0]), read="duckdb"):
        if tree is not None:
            _collate_c(tree)
            statements.append(tree.sql(dialect="postgres"))
    return ";\n".join(statements) + f";\n{LINEAGE_VIEW}\n{INDEXES}"


def redact(url: str) -> str:
    """The URL without its password: what logs and metadata may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc[-1]}"))


class StoreLocation(PosixPath):
    """`store.path` for a store that is not a file: prints as its URL (password hidden), so the
    report and the UI's `lineage_db` entry say where the lineage lives."""

    _url: str

    def __new__(cls, url: str) -> StoreLocation:
        self = super().__new__(cls, "/")
        self._url = url
        return self

    def __init__(self, url: str) -> None:
        if sys.version_info >= (3, 12):  # 3.12's PurePath keeps its parts from __init__, not __new__
            super().__init__("/")

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"StoreLocation({self._url!r})"


class _NumericLoader(Loader):
    """`numeric` as DuckDB would return it: an int when whole (`sum` of BIGINT), else a float (`avg`)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


def _clean(value: Any) -> Any:
    """Postgres text cannot hold NUL (DuckDB's can): it becomes U+FFFD, as the journal does for surrogates."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class _Connection:
    """What `connect()` yields: `execute(sql, params)` in DuckDB's dialect, like a DuckDB connection."""

    def __init__(self, con: psycopg.Connection[Any]) -> None:
        self.raw = con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.RawCursor[Any]:
        cur = psycopg.RawCursor(self.raw)
        cur.execute(to_postgres(sql), [_clean(p) for p in params] or None)
        return cur


class PostgresLineageStore(LineageStore):
    """The lineage tables in Postgres: many processes on many machines write at once.

    Same interface and semantics as the DuckDB file: `replace_partition` replaces one tool set's
    rows of several tables in one transaction (two replaces of the same partition queue on an
    advisory lock; different partitions do not wait for each other), `append` appends
    (`llm_cache` keeps the first answer per key), `query` takes DuckDB-dialect SQL and returns
    dicts with JSON decoded. One connection per process and thread is kept (idle between units of
    work; it holds no lock); a lost connection, a deadlock or a serialisation failure is retried
    with backoff until `lock_timeout_s`, then raised as `StoreUnavailable` (not a bad row).
    """

    def __init__(self, url: str, lock_timeout_s: float = 120.0) -> None:
        super().__init__("/", lock_timeout_s)
        self.url = url
        self.path = StoreLocation(redact(url))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._json_cols: dict[str, set[str]] = {}

    def _open(self) -> psycopg.Connection[Any]:
        con = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        con.adapters.register_loader("numeric", _NumericLoader)
        return con

    def _connection(self) -> psycopg.Connection[Any]:
        """This thread's connection; a forked child opens its own (a socket is never shared)."""
        con = getattr(self._local, "con", None)
        if con is None or con.closed or con.broken or getattr(self._local, "pid", None) != os.getpid():
            con = self._local.con = self._open()
            self._local.pid = os.getpid()
        return con

    def _drop_connection(self) -> None:
        con = getattr(self._local, "con", None)
        self._local.con = None
        if con is not None:
            with suppress(psycopg.Error):
                con.close()

    def _ensure_schema(self, con: psycopg.Connection[Any]) -> None:
        """Apply the DDL once per database version of it; concurrent first users wait on one lock."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            ddl_sql = schema_sql()
            digest = hashlib.sha256(ddl_sql.encode()).hexdigest()
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK])
                con.execute(
                    "CREATE TABLE IF NOT EXISTS magnet_schema (ddl_hash VARCHAR PRIMARY KEY, applied_at TIMESTAMP)"
                )
                done = con.execute("SELECT 1 FROM magnet_schema WHERE ddl_hash = %s", [digest]).fetchone()
                if done is None:
                    con.execute(ddl_sql.encode())
                    con.execute("INSERT INTO magnet_schema VALUES (%s, now())", [digest])
            self._ready = True

    @contextmanager
    def _unit(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection for one unit of work (schema applied)."""
        con = self._connection()
        self._ensure_schema(con)
        yield con

    def _retrying(self, work: Any) -> Any:
        """Run `work(con)`, retrying transient failures (connection lost, deadlock) until the deadline."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                with self._unit() as con:
                    return work(con)
            except psycopg.OperationalError as exc:
                self._drop_connection()
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"lineage store {self.path}: {type(exc).__name__}: {exc}") from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        """A connection whose `execute` takes DuckDB-dialect SQL (autocommit, like DuckDB's)."""
        con = self._retrying(lambda c: c)
        yield _Connection(con)

    def replace_partition(
        self,
        tool_set: str,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        stage: str | None = None,
    ) -> None:
        deletes = partition_deletes(tool_set, tables, stage)

        def work(con: psycopg.Connection[Any]) -> None:
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_PARTITION_LOCK_NS, tool_set])
                for (sql, params), (table, rows) in zip(deletes, tables.items()):
                    con.execute(sql.replace("?", "%s"), params)
                    self._copy(con, table, rows)

        self._retrying(work)

    def append(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if table not in APPEND_TABLES:
            raise ValueError(f"{table} is not an append-only table")

        def work(con: psycopg.Connection[Any]) -> None:
            with con.transaction():
                if table == "llm_cache":
                    # COPY has no ON CONFLICT: stage the rows, then keep the first answer per key.
                    con.execute("CREATE TEMP TABLE _incoming (LIKE llm_cache) ON COMMIT DROP")
                    columns = self._copy(con, "_incoming", rows)
                    if columns:
                        cols = ", ".join(columns)
                        con.execute(
                            f"INSERT INTO llm_cache ({cols}) SELECT {cols} FROM _incoming ON CONFLICT DO NOTHING"
                        )
                else:
                    self._copy(con, table, rows)

        if rows:
            self._retrying(work)
        return len(rows)

    def _json_columns(self, con: psycopg.Connection[Any], table: str) -> set[str]:
        if table not in self._json_cols:
            rows = con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = %s AND data_type IN ('json', 'jsonb') AND table_schema = current_schema()",
                [table],
            ).fetchall()
            self._json_cols[table] = {r[0] for r in rows}
        return self._json_cols[table]

    def _copy(self, con: psycopg.Connection[Any], table: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """COPY `rows` into `table` (JSON-typed values serialised, as the DuckDB store does)."""
        if not rows:
            return []
        json_cols = self._json_columns(con, "llm_cache" if table == "_incoming" else table)
        columns = list(rows[0].keys())
        with con.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(
                    [
                        (json.dumps(r.get(c)) if r.get(c) is not None else None) if c in json_cols else _clean(r.get(c))
                        for c in columns
                    ]
                )
        return columns

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read query in DuckDB's dialect (transpiled once) and return dicts, JSON decoded."""
        statement = to_postgres(sql)
        values = [_clean(p) for p in params]

        def work(con: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            cur = psycopg.RawCursor(con)
            cur.execute(statement, values or None)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

        result: list[dict[str, Any]] = self._retrying(work)
        return result
