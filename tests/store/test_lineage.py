"""The DuckDB lineage store: idempotent partition writes, isolation, waiting on another process's lock."""

import subprocess
import sys
import textwrap
import time

import duckdb

from magnet_dagster.store.lineage import LineageStore


def _fn(tool_set: str, name: str) -> dict:
    return {"function_id": f"{tool_set}-{name}", "tool_set": tool_set, "run_id": "r1", "name": name,
            "description": "", "parameters": {"type": "object"}, "returns": None, "category": None,
            "tool": None, "source_file": "x.json", "executable": False}


def test_replacing_a_partition_is_idempotent_and_leaves_others_alone(tmp_path):
    store = LineageStore(tmp_path / "lineage.duckdb")
    store.replace_partition("a", {"functions": [_fn("a", "f"), _fn("a", "g")]})
    store.replace_partition("b", {"functions": [_fn("b", "h")]})
    store.replace_partition("a", {"functions": [_fn("a", "f")]})
    assert store.count("functions", "a") == 1
    assert store.count("functions", "b") == 1
    assert store.rows("functions", "a")[0]["parameters"] == {"type": "object"}


def test_a_failed_write_changes_nothing(tmp_path):
    store = LineageStore(tmp_path / "lineage.duckdb")
    store.replace_partition("a", {"functions": [_fn("a", "f")]})
    bad = _fn("a", "g") | {"name": None}  # NOT NULL violated
    try:
        store.replace_partition("a", {"functions": [_fn("a", "g2"), bad]})
    except duckdb.Error:
        pass
    assert [r["name"] for r in store.rows("functions", "a")] == ["f"]


def test_store_waits_while_another_process_holds_the_file(tmp_path):
    path = tmp_path / "lineage.duckdb"
    LineageStore(path).replace_partition("a", {"functions": [_fn("a", "f")]})
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time, sys
        con = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        time.sleep(1.5)
        con.close()
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    LineageStore(path, lock_timeout_s=30).replace_partition("b", {"functions": [_fn("b", "h")]})
    waited = time.monotonic() - started
    holder.wait()
    assert waited > 0.5, "the write had to wait for the other process"
    assert LineageStore(path).count("functions", "b") == 1


def test_lineage_view_exists(tmp_path):
    store = LineageStore(tmp_path / "lineage.duckdb")
    assert store.query("SELECT count(*) AS n FROM training_example_lineage")[0]["n"] == 0
