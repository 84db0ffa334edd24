"""Measure the two lineage stores side by side: the figures behind choosing Postgres for the shared one.

    .venv/bin/python -m tests.store.measure_stores [ROWS]

Starts a throwaway PostgreSQL server (tests/postgres_server.py) and a DuckDB file in a temp
folder, then times, for each store: one `replace_partition` of ROWS turn rows (JSON and list
columns, the widest table), a per-partition read of them back, an `append` of ROWS `llm_cache`
rows (`ON CONFLICT DO NOTHING`), 200 single-key cache lookups, and four processes each replacing
their own partition of ROWS rows three times at once (wall time for all twelve writes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from magnet_dagster.store.lineage import LINEAGE_URL_ENV, LineageStore, open_lineage_store
from tests.postgres_server import postgres_server

ROOT = Path(__file__).resolve().parents[2]


def turn_rows(tool_set: str, n: int) -> list[dict[str, Any]]:
    return [
        {"turn_id": f"{tool_set}-u{i}", "tool_set": tool_set, "run_id": "r", "path_id": f"p{i // 3}",
         "turn_index": i % 3, "kind": "call", "function_ids": [f"f{i % 40}", f"f{(i + 1) % 40}"],
         "query": f"please add {i} and {i + 1} and then multiply the result by three", "attempts": 1,
         "calls": [{"name": "add", "arguments": {"a": i, "b": i + 1}}], "outputs": [{"result": 2 * i + 1}],
         "tools": ["add", "multiply"], "llm_call_ids": [f"c{i}a", f"c{i}b"]}
        for i in range(n)
    ]


def cache_rows(n: int) -> list[dict[str, Any]]:
    return [{"cache_key": f"k{i:08d}", "backend": "openai", "model": "m", "created_at": None,
             "response": {"message": {"role": "assistant", "content": f"answer {i} " * 20}, "input_tokens": 40}}
            for i in range(n)]


WRITER = textwrap.dedent("""
    import sys, time
    from magnet_dagster.store.lineage import open_lineage_store
    from tests.store.measure_stores import turn_rows
    me, n = sys.argv[1], int(sys.argv[2])
    store = open_lineage_store()
    rows = turn_rows(me, n)
    store.query("SELECT 1 AS one")  # schema applied before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(3):
        store.replace_partition(me, {"turns": rows})
""")


def concurrent_writes(env: dict[str, str], n: int) -> float:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{i}", str(n)], env=env, cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for i in range(4)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.wait()
        assert p.returncode == 0
    return time.perf_counter() - started


def measure(store: LineageStore, env: dict[str, str], n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    rows = turn_rows("one", n)
    store.query("SELECT 1 AS one")
    started = time.perf_counter()
    store.replace_partition("one", {"turns": rows})
    out["replace_partition"] = time.perf_counter() - started
    started = time.perf_counter()
    back = store.rows("turns", "one", "turn_id")
    out["read_partition"] = time.perf_counter() - started
    assert len(back) == n
    started = time.perf_counter()
    store.append("llm_cache", cache_rows(n))
    out["append_llm_cache"] = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, 200):
        store.query("SELECT response FROM llm_cache WHERE backend = ? AND model = ? AND cache_key = ?",
                    ["openai", "m", f"k{i * 7:08d}"])
    out["200_key_lookups"] = time.perf_counter() - started
    out["4_procs_x3_replaces"] = concurrent_writes(env, n)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    base = {k: v for k, v in os.environ.items() if k != LINEAGE_URL_ENV} | {"PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg:
        duck_env = base | {"MAGNET_HOME": tmp}
        pg_env = base | {"MAGNET_HOME": tmp, LINEAGE_URL_ENV: pg.database("measure")}
        results = {}
        for name, env in (("duckdb file", duck_env), ("postgres", pg_env)):
            os.environ.clear()
            os.environ.update(env)
            results[name] = measure(open_lineage_store(), env, n)
    print(f"{n} rows per write; seconds")
    names = list(results)
    print(f"{'':24}" + "".join(f"{name:>14}" for name in names))
    for key in results[names[0]]:
        print(f"{key:24}" + "".join(f"{results[name][key]:14.3f}" for name in names))


if __name__ == "__main__":
    main()
