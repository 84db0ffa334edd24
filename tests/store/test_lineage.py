"""The lineage stores: idempotent partition writes, isolation, concurrent writers, the lineage view.

Every test that is not about one store's own mechanics runs against both: the DuckDB file (the
default) and the shared Postgres store (`MAGNET_LINEAGE_URL`, a real local server; `integration`).
"""

import os
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from magnet_dagster.store.lineage import LINEAGE_URL_ENV, LineageStore, open_lineage_store
from tests.conftest import ROOT

STORES = ["duckdb", pytest.param("postgres", marks=pytest.mark.integration)]


@pytest.fixture(params=STORES)
def store_env(request, tmp_path, monkeypatch) -> dict[str, str]:
    """The environment that selects one store (MAGNET_HOME for the file, MAGNET_LINEAGE_URL for Postgres)."""
    env = {"MAGNET_HOME": str(tmp_path / "magnet")}
    monkeypatch.setenv("MAGNET_HOME", env["MAGNET_HOME"])
    monkeypatch.delenv(LINEAGE_URL_ENV, raising=False)
    if request.param == "postgres":
        env[LINEAGE_URL_ENV] = request.getfixturevalue("postgres_url")
        monkeypatch.setenv(LINEAGE_URL_ENV, env[LINEAGE_URL_ENV])
    return env


@pytest.fixture
def store(store_env) -> LineageStore:
    return open_lineage_store()


def _fn(tool_set: str, name: str) -> dict:
    return {"function_id": f"{tool_set}-{name}", "tool_set": tool_set, "run_id": "r1", "name": name,
            "description": "", "parameters": {"type": "object"}, "returns": None, "category": None,
            "tool": None, "source_file": "x.json", "executable": False}


def test_the_environment_variable_chooses_the_store(store_env):
    store = open_lineage_store()
    if LINEAGE_URL_ENV in store_env:
        assert type(store).__name__ == "PostgresLineageStore"
        assert str(store.path).startswith("postgresql://")
    else:
        assert type(store) is LineageStore and store.path.name == "lineage.duckdb"


def test_replacing_a_partition_is_idempotent_and_leaves_others_alone(store):
    store.replace_partition("a", {"functions": [_fn("a", "f"), _fn("a", "g")]})
    store.replace_partition("b", {"functions": [_fn("b", "h")]})
    store.replace_partition("a", {"functions": [_fn("a", "f")]})
    assert store.count("functions", "a") == 1
    assert store.count("functions", "b") == 1
    assert store.rows("functions", "a")[0]["parameters"] == {"type": "object"}


def test_a_failed_write_changes_nothing(store):
    store.replace_partition("a", {"functions": [_fn("a", "f")]})
    bad = _fn("a", "g") | {"name": None}  # NOT NULL violated
    with pytest.raises(Exception, match=r"(?i)null"):
        store.replace_partition("a", {"functions": [_fn("a", "g2"), bad]})
    assert [r["name"] for r in store.rows("functions", "a")] == ["f"]


def test_llm_cache_keeps_the_first_answer_per_key_and_json_comes_back_decoded(store):
    row = {"cache_key": "k1", "backend": "b", "model": "m", "response": {"message": {"content": "first"}},
           "created_at": "2026-01-01 00:00:00"}
    store.append("llm_cache", [row])
    store.append("llm_cache", [row | {"response": {"message": {"content": "second"}}}, row | {"cache_key": "k2"}])
    rows = store.query("SELECT cache_key, response FROM llm_cache ORDER BY cache_key")
    assert [r["cache_key"] for r in rows] == ["k1", "k2"]
    assert rows[0]["response"] == {"message": {"content": "first"}}
    text = store.query("SELECT CAST(response AS VARCHAR) AS r FROM llm_cache WHERE cache_key = ?", ["k1"])[0]["r"]
    assert isinstance(text, str) and "first" in text
    hit = store.query("SELECT cache_key FROM llm_cache WHERE backend = ? AND list_contains(?, cache_key)",
                      ["b", ["k2", "nope"]])
    assert hit == [{"cache_key": "k2"}]


def test_lineage_view_exists(store):
    assert store.query("SELECT count(*) AS n FROM training_example_lineage")[0]["n"] == 0


def test_lineage_view_traces_a_training_example_to_its_sources(store):
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


#: One writer process: replaces its own partition several times (the last write wins), rewrites a
#: partition every writer shares, and appends overlapping llm_cache keys and its own llm_calls.
WRITER = textwrap.dedent("""
    import sys
    from magnet_dagster.store.lineage import open_lineage_store
    me, rounds = sys.argv[1], int(sys.argv[2])
    store = open_lineage_store()
    def fn(t, i):
        return {"function_id": f"{t}-{i}", "tool_set": t, "run_id": me, "name": f"f{i}", "description": "",
                "parameters": {"type": "object"}, "returns": None, "category": None, "tool": None,
                "source_file": "x.json", "executable": False}
    for r in range(rounds):
        store.replace_partition(me, {"functions": [fn(me, i) for i in range(50 + r)]})
        store.replace_partition("shared", {"functions": [fn("shared", i) for i in range(30)]})
        store.append("llm_cache", [{"cache_key": f"k{i}", "backend": "b", "model": "m", "response": {"v": me},
                                    "created_at": None} for i in range(r * 5, r * 5 + 20)])
        store.append("llm_calls", [{"call_id": f"{me}-{r}-{i}", "tool_set": me, "run_id": me, "asset": "a",
                                    "backend": "b", "model": "m", "cache_key": f"k{i}", "prompt_hash": "h",
                                    "cache_hit": False, "outcome": "ok"} for i in range(10)])
    print("done", flush=True)
""")


def test_four_processes_write_at_once_and_every_write_lands_whole(store_env, tmp_path):
    """Four workers, each its own partition plus one they all rewrite, and one shared cache."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writers, rounds = [f"w{i}" for i in range(4)], 4
    env = {**os.environ, **store_env, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(script), w, str(rounds)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in writers]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    store = open_lineage_store()
    for w in writers:
        assert store.count("functions", w) == 50 + rounds - 1, "the last replace of a partition is what stays"
        assert store.count("llm_calls", w) == 10 * rounds
    shared = store.query("SELECT count(*) AS n, count(DISTINCT run_id) AS writers FROM functions "
                         "WHERE tool_set = 'shared'")[0]
    assert shared == {"n": 30, "writers": 1}, "one writer's replace, never a mix of two"
    assert store.query("SELECT count(*) AS n FROM llm_cache")[0]["n"] == 5 * (rounds - 1) + 20


def test_store_waits_while_another_process_holds_the_file(tmp_path):
    """DuckDB only: one writer per file, so a second process waits for the lock (and gets it)."""
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
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT count(*) FROM functions").fetchone() == (2,)
