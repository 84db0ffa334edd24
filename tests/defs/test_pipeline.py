"""End to end through Dagster with the real local llama.cpp server and a real DuckDB file.

SmolLM2-135M is a weak teacher, so these tests do not ask for a high yield: they check
that every stage ran, that every path is accounted for (kept or rejected with a rule),
that lineage ties rows together, and that a rerun is served entirely from the cache.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from magnet_dagster.definitions import defs
from magnet_dagster.defs.jobs import magnet_pipeline
from magnet_dagster.store.lineage import LineageStore
from tests.conftest import ROOT, write_tiny_bfcl_tool_set

pytestmark = pytest.mark.integration

ASSETS = ["function_catalog", "function_graph", "signature_paths", "queries", "trajectories",
          "training_splits", "student_evaluation"]


def _materialize(instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(magnet_pipeline.name).execute_in_process(instance=instance, partition_key=key)


def _accounting(store: LineageStore, key: str) -> dict[str, int]:
    q = lambda sql: store.query(sql, [key])[0]["n"]  # noqa: E731
    return {
        "functions": q("SELECT count(*) AS n FROM functions WHERE tool_set = ?"),
        "edges": q("SELECT count(*) AS n FROM graph_edges WHERE tool_set = ?"),
        "paths": q("SELECT count(*) AS n FROM paths WHERE tool_set = ?"),
        "paths_with_turns": q("SELECT count(DISTINCT path_id) AS n FROM turns WHERE tool_set = ?"),
        "query_rejections": q("SELECT count(*) AS n FROM path_rejections WHERE tool_set = ? AND stage = 'queries'"),
        "trajectories": q("SELECT count(*) AS n FROM trajectories WHERE tool_set = ?"),
        "trajectory_rejections": q("SELECT count(*) AS n FROM path_rejections WHERE tool_set = ? AND stage = 'trajectories'"),
        "splits": q("SELECT count(*) AS n FROM splits WHERE tool_set = ?"),
        "llm_calls": q("SELECT count(*) AS n FROM llm_calls WHERE tool_set = ?"),
    }


def test_pipeline_runs_every_stage_and_a_rerun_makes_no_new_llm_request(magnet_home, tool_sets_dir):
    write_tiny_bfcl_tool_set(tool_sets_dir, "tiny", ["add", "multiply", "square_root", "round_number"])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tool_sets", ["tiny"])
        first = _materialize(instance, "tiny")
        assert first.success
        materialized = {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()}
        assert materialized == set(ASSETS)

        store = LineageStore(magnet_home / "lineage.duckdb")
        n = _accounting(store, "tiny")
        assert n["functions"] == 4
        assert n["edges"] > 0 and n["paths"] > 0 and n["llm_calls"] > 0
        assert n["paths_with_turns"] + n["query_rejections"] == n["paths"], n
        assert n["trajectories"] + n["trajectory_rejections"] == n["paths_with_turns"], n
        assert n["splits"] <= n["trajectories"]
        runs = store.query("SELECT DISTINCT run_id FROM llm_calls WHERE tool_set = 'tiny'")
        assert [r["run_id"] for r in runs] == [first.run_id]
        # every path's rows point at its walk's functions and the edges it walked
        for path in store.rows("paths", "tiny"):
            assert len(path["edge_ids"]) == len(path["walk"]) - 1
        expected_turns = sum(
            sum(1 for m in t["messages"] if m["role"] == "user")
            for t in store.query("SELECT t.messages FROM trajectories t JOIN splits s USING (tool_set, trajectory_id) "
                                 "WHERE t.tool_set = 'tiny' AND s.split = 'test'"))
        for mode in ("teacher_forced", "free_running"):  # MathAPI executes, so both modes run
            evaluated = store.query("SELECT count(*) AS n FROM eval_results WHERE tool_set = 'tiny' AND run_id = ? "
                                    "AND mode = ?", [first.run_id, mode])[0]["n"]
            assert evaluated == expected_turns, mode

        second = _materialize(instance, "tiny")
        assert second.success
        calls = store.query("SELECT cache_hit FROM llm_calls WHERE run_id = ?", [second.run_id])
        assert calls and all(c["cache_hit"] for c in calls), "a rerun must be served from the cache"
        assert _accounting(store, "tiny") | {"llm_calls": 0} == n | {"llm_calls": 0}


def test_two_partitions_materialize_at_once_on_one_magnet_home(tmp_path, magnet_home, tool_sets_dir):
    write_tiny_bfcl_tool_set(tool_sets_dir, "left", ["add", "subtract", "absolute_value"], seed=2)
    write_tiny_bfcl_tool_set(tool_sets_dir, "right", ["multiply", "divide", "power"], seed=3)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = os.environ | {"DAGSTER_HOME": str(dagster_home), "MAGNET_HOME": str(magnet_home),
                        "MAGNET_TOOL_SETS_DIR": str(tool_sets_dir)}
    bin_dir = Path(sys.executable).parent
    subprocess.run([sys.executable, "-m", "magnet_dagster.defs.cli", "add", "left", "right"],
                   env=env, cwd=ROOT, check=True)
    procs = [subprocess.Popen([str(bin_dir / "dagster"), "asset", "materialize", "-m", "magnet_dagster.definitions",
                               "--select", "group:magnet_pipeline", "--partition", key], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for key in ("left", "right")]
    try:
        outputs = [p.communicate(timeout=1100)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        tails = [p.communicate()[0][-3000:] for p in procs]
        pytest.fail("the two runs did not finish in 1100 s; their last output:\n" + "\n-----\n".join(tails))
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    # both runs (and each of their step processes) used one server at a time: the keepers' starts
    # and stops alternate in the log they share (the last one may still be in its idle grace)
    events = [line.split()[3] for line in (magnet_home / "llama_server.log").read_text().splitlines()
              if line.startswith("shared_server: keeper")]
    assert events[::2] == ["started"] * len(events[::2]) and events[1::2] == ["stopped"] * len(events[1::2]), events
    print(f"server starts over the two runs: {len(events[::2])}")
    store = LineageStore(magnet_home / "lineage.duckdb")
    for key in ("left", "right"):
        n = _accounting(store, key)
        assert n["functions"] == 3 and n["edges"] > 0 and n["paths"] > 0 and n["llm_calls"] > 0, (key, n)
        assert n["paths_with_turns"] + n["query_rejections"] == n["paths"], (key, n)
        assert n["trajectories"] + n["trajectory_rejections"] == n["paths_with_turns"], (key, n)
    names = {r["tool_set"]: r["names"] for r in store.query(
        "SELECT tool_set, list(name ORDER BY name) AS names FROM functions GROUP BY tool_set")}
    assert names == {"left": ["absolute_value", "add", "subtract"], "right": ["divide", "multiply", "power"]}
    assert not list((magnet_home / "llm_journal").glob("*.jsonl")), "every journal was moved into DuckDB"
