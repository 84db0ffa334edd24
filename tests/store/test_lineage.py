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


def test_lineage_view_traces_a_training_example_to_its_sources(tmp_path):
    store = LineageStore(tmp_path / "lineage.duckdb")
    t = "demo"
    store.replace_partition(t, {
        "functions": [_fn(t, "add"), _fn(t, "mul")],
        "graph_edges": [{"edge_id": "e1", "tool_set": t, "run_id": "r1", "source_id": "demo-add", "target_id": "demo-mul",
                         "relation": "full", "reason": "sum feeds product", "score": 3.0, "llm_call_id": "c-judge"}],
        "paths": [{"path_id": "p1", "tool_set": t, "run_id": "r2", "walk": ["demo-add", "demo-mul"], "edge_ids": ["e1"],
                   "turns": [{"functions": ["add"]}, {"functions": ["mul"]}], "operations": ["merge"],
                   "llm_call_ids": []}],
        "turns": [{"turn_id": f"u{i}", "tool_set": t, "run_id": "r3", "path_id": "p1", "turn_index": i, "kind": "call",
                   "function_ids": [fid], "query": q, "calls": [], "outputs": [], "tools": [], "attempts": 1,
                   "llm_call_ids": [f"c-back-{i}", f"c-fwd-{i}"]}
                  for i, (fid, q) in enumerate([("demo-add", "add 1 and 2"), ("demo-mul", "times 3")])],
        "trajectories": [{"trajectory_id": "x1", "tool_set": t, "run_id": "r4", "path_id": "p1", "turn_ids": ["u0", "u1"],
                          "messages": [{"role": "user", "content": "add 1 and 2"}], "tools": [],
                          "llm_call_ids": ["c-teach"]}],
        "splits": [{"tool_set": t, "run_id": "r5", "trajectory_id": "x1", "path_id": "p1", "split": "train"}],
    })
    row, = store.query("SELECT * FROM training_example_lineage WHERE trajectory_id = ?", ["x1"])
    assert row["split"] == "train" and row["path_id"] == "p1" and row["operations"] == ["merge"]
    assert sorted(row["function_names"]) == ["add", "mul"]
    assert [e["edge_id"] for e in row["edges"]] == ["e1"] and row["edges"][0]["llm_call_id"] == "c-judge"
    assert [u["query"] for u in row["turns"]] == ["add 1 and 2", "times 3"]
    assert row["turns"][1]["llm_call_ids"] == ["c-back-1", "c-fwd-1"]
    assert row["trajectory_llm_call_ids"] == ["c-teach"]
