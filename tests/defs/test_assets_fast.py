"""Every asset and check through `dg.materialize`, with the schema-following fake LLM (a fake,
named as one) as teacher and student, a real DuckDB file and a real Dagster instance.

These run in seconds; the same path against the real local server is in test_pipeline.py.
"""

import json

import dagster as dg
import pytest

from magnet_dagster.defs.bfcl import bfcl_multi_turn
from magnet_dagster.defs.catalog import function_catalog
from magnet_dagster.defs.evaluation import student_evaluation
from magnet_dagster.defs.graph import function_graph
from magnet_dagster.defs.paths import signature_paths
from magnet_dagster.defs.queries import no_bfcl_contamination, queries
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.defs.splits import exports_are_clean, no_split_leakage, training_splits
from magnet_dagster.defs.trajectories import trajectories, yield_above_floor
from magnet_dagster.llm.client import Backend
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.store.loaders import load_specs
from magnet_dagster.synthesis.export import exported_problems
from magnet_dagster.synthesis.splits import leaked_paths
from tests.conftest import write_tiny_bfcl_tool_set
from tests.fake_teacher import SchemaFollowingFake

PIPELINE = [function_catalog, function_graph, signature_paths, queries, trajectories, training_splits,
            student_evaluation]
CHECKS = [no_bfcl_contamination, yield_above_floor, no_split_leakage, exports_are_clean]


class FakeLLMResource(LLMResource):
    """The LLM resource with the schema-following fake as its backend (no server started)."""

    def backend(self) -> Backend:
        return SchemaFollowingFake()


RESOURCES = {"lineage": LineageStoreResource(), "teacher": FakeLLMResource(role="teacher"),
             "student": FakeLLMResource(role="student")}


def _run(instance, key, assets=PIPELINE + CHECKS, selection=None, raise_on_error=True):
    return dg.materialize(assets, instance=instance, partition_key=key, resources=RESOURCES,
                          selection=selection, raise_on_error=raise_on_error)


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def store(magnet_home) -> LineageStore:
    return LineageStore(magnet_home / "lineage.duckdb")


def test_every_asset_and_check_materializes_with_the_fake_teacher(magnet_home, tool_sets_dir, instance, store):
    write_tiny_bfcl_tool_set(tool_sets_dir, "tiny", ["add", "multiply", "square_root", "round_number"])
    instance.add_dynamic_partitions("tool_sets", ["tiny"])
    result = _run(instance, "tiny")
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert set(meta) == {a.key.to_user_string() for a in PIPELINE}
    assert meta["function_catalog"]["functions"].value == 4
    assert meta["function_graph"]["judged_pairs"].value == store.count("graph_edges", "tiny") > 0
    assert meta["signature_paths"]["paths"].value == store.count("paths", "tiny") > 0
    q = meta["queries"]
    assert q["paths_kept"].value + q["paths_dropped"].value == q["paths_in"].value == store.count("paths", "tiny")
    assert q["paths_kept"].value > 0, "the fake copies literals, so some paths must survive translation"
    t = meta["trajectories"]
    assert t["trajectories"].value == store.count("trajectories", "tiny") > 0
    assert meta["training_splits"]["sft_rows"].value == store.count("splits", "tiny")
    assert (magnet_home / "exports" / "tiny" / "sft.jsonl").exists()
    assert meta["student_evaluation"]["dagster/row_count"].value == store.count("eval_results", "tiny") > 0
    assert _checks(result) == {"no_bfcl_contamination": True, "yield_above_floor": True,
                               "no_split_leakage": True, "exports_are_clean": True}
    calls = store.query("SELECT count(*) AS n, count(DISTINCT asset) AS assets FROM llm_calls WHERE tool_set = 'tiny'")
    # graph, queries, trajectories, evaluation (signature_paths reads the graph judge's nested verdicts)
    assert calls[0]["assets"] == 4


def test_a_rerun_with_the_fake_is_served_from_the_cache(magnet_home, tool_sets_dir, instance, store):
    write_tiny_bfcl_tool_set(tool_sets_dir, "tiny", ["add", "multiply", "round_number"], seed=2)
    instance.add_dynamic_partitions("tool_sets", ["tiny"])
    _run(instance, "tiny")
    second = _run(instance, "tiny")
    hits = store.query("SELECT cache_hit FROM llm_calls WHERE run_id = ?", [second.run_id])
    assert hits and all(h["cache_hit"] for h in hits)


def test_checks_read_only_their_runs_partition(magnet_home, tool_sets_dir, instance, store):
    """One tool set's bad exports and leaked split fail its own checks, never another's run."""
    write_tiny_bfcl_tool_set(tool_sets_dir, "good", ["add", "multiply", "round_number"], seed=3)
    write_tiny_bfcl_tool_set(tool_sets_dir, "bad", ["add", "multiply", "square_root", "round_number"], seed=5)
    instance.add_dynamic_partitions("tool_sets", ["good", "bad"])
    _run(instance, "bad")
    # poison `bad`: a leaked path and an exported call to a function it never offered
    with store.connect() as con:
        con.execute("INSERT INTO splits SELECT tool_set, 'r-x', 'leak', path_id, 'test' FROM splits "
                    "WHERE tool_set = 'bad' AND split <> 'test' LIMIT 1")
    sft = magnet_home / "exports" / "bad" / "sft.jsonl"
    rows = [json.loads(line) for line in sft.read_text().splitlines()]
    rows[0]["messages"].append({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "os.system", "arguments": '{"command": "rm -rf /"}'}}]})
    sft.write_text("".join(json.dumps(r) + "\n" for r in rows))

    good = _run(instance, "good")
    blocking = {"no_bfcl_contamination", "no_split_leakage", "exports_are_clean"}
    assert {k: v for k, v in _checks(good).items() if k in blocking} == dict.fromkeys(blocking, True)
    assert {e.asset_key.to_user_string() for e in good.get_asset_materialization_events()} >= {"student_evaluation"}

    # and the same poison is what `bad`'s own checks look at
    assert leaked_paths(store.rows("splits", "bad"))
    problems = exported_problems([json.loads(line) for line in sft.read_text().splitlines()],
                                 load_specs(store, "bad"))
    assert any("os.system: not offered" in p for p in problems), problems


def test_an_unreadable_file_fails_its_partition_in_one_line(tool_sets_dir, instance, store):
    (tool_sets_dir / "broken.json").write_text('[{"type": "function", "function": {"name": "f",,}}]')
    instance.add_dynamic_partitions("tool_sets", ["broken"])
    result = _run(instance, "broken", assets=[function_catalog], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert "broken.json" in description and "line 1 column" in description
    assert "\n" not in description
    assert failure.step_failure_data.error.cause is None, "the reader's traceback goes to the debug log only"
    assert store.count("functions", "broken") == 0


def test_bfcl_multi_turn_runs_with_the_fake_student(magnet_home, instance, store):
    result = dg.materialize([bfcl_multi_turn], instance=instance, resources=RESOURCES, run_config={
        "ops": {"bfcl_multi_turn": {"config": {"entries_per_category": 1, "categories": ["multi_turn_base"]}}}})
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/row_count"].value == 1
    assert store.count("eval_results", "bfcl") == 1


def test_a_poisoned_journal_is_quarantined_and_the_run_goes_on(magnet_home, tool_sets_dir, instance, store):
    """A journal line DuckDB refuses (a lone surrogate an older version wrote) never blocks a run."""
    journal = magnet_home / "llm_journal"
    journal.mkdir(parents=True)
    row = {"call_id": "old", "tool_set": "x", "run_id": "r", "asset": "a", "backend": "fake", "model": "m",
           "cache_key": "k", "prompt_hash": "p", "input_tokens": 0, "output_tokens": 0, "latency_ms": 1.0,
           "cache_hit": False, "outcome": "ok", "error": None, "created_at": "2026-01-01T00:00:00"}
    poisoned = {"table": "llm_cache", "row": {"cache_key": "k", "backend": "fake", "model": "m",
                                              "response": {"message": {"content": "\ud800"}}, "created_at": "2026-01-01"}}
    (journal / "1-old.jsonl").write_text(json.dumps({"table": "llm_calls", "row": row}) + "\n" + json.dumps(poisoned)
                                         + "\n")
    write_tiny_bfcl_tool_set(tool_sets_dir, "tiny", ["add", "multiply"], seed=6)
    instance.add_dynamic_partitions("tool_sets", ["tiny"])
    result = _run(instance, "tiny", assets=[function_catalog, function_graph])
    assert result.success
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if "quarantined to" in e.user_message]
    assert warnings and str(journal / "quarantine" / "1-old.jsonl") in warnings[0]
    assert store.query("SELECT count(*) AS n FROM llm_calls WHERE call_id = 'old'")[0]["n"] == 1
    assert not list(journal.glob("*.jsonl")), "the journal was moved in, the bad line set aside"
