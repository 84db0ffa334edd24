"""The contamination guard catches BFCL's evaluation queries and initial states, and only those."""

import json

import dagster as dg

from magnet_dagster.defs.queries import no_bfcl_contamination
from magnet_dagster.defs.resources import LineageStoreResource
from magnet_dagster.evaluation.contamination import (
    bfcl_evaluation_data, copied_queries, copied_states, shares_functions,
)
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools import bfcl


def _bfcl_entry() -> dict:
    path = bfcl.package_dir() / "data" / "BFCL_v4_multi_turn_base.json"
    return json.loads(path.read_text().splitlines()[0])


def test_a_planted_bfcl_query_is_caught_exactly_and_inside_longer_text():
    question = _bfcl_entry()["question"][0][0]["content"]
    found = copied_queries([("t1", question), ("t2", "Hi! " + question.upper() + " Thanks."),
                            ("t3", "What is 6 times 9?")])
    assert [f["id"] for f in found] == ["t1", "t2"]


def test_a_copied_initial_state_is_caught_and_generated_ones_pass():
    entry = _bfcl_entry()
    cls, config = next(iter(entry["initial_config"].items()))
    assert copied_states([("p1", cls, config)]) == [{"id": "p1", "why": f"{cls} state equals a BFCL initial_config"}]
    generated = [(f"p{s}", "TicketAPI", bfcl.initial_state("TicketAPI", s)) for s in range(50)]
    assert copied_states(generated) == []


def test_only_tool_sets_sharing_functions_with_bfcl_are_checked():
    assert shares_functions(["create_ticket", "my_own_tool"])
    assert not shares_functions(["my_own_tool"])
    assert len(bfcl_evaluation_data().questions) > 100


def test_asset_check_fails_on_a_planted_query(tmp_path):
    store = LineageStore(tmp_path / "lineage.duckdb")
    question = _bfcl_entry()["question"][0][0]["content"]
    fn = {"function_id": "f", "tool_set": "t", "run_id": "r", "name": "create_ticket", "description": "",
          "parameters": {"type": "object"}, "returns": None, "category": None, "tool": None, "source_file": None,
          "executable": True}
    turn = {"turn_id": "u1", "tool_set": "t", "run_id": "r", "path_id": "0000abcd", "turn_index": 0, "kind": "call",
            "function_ids": ["f"], "query": question, "calls": [], "outputs": [], "tools": [], "attempts": 1,
            "llm_call_ids": []}
    store.replace_partition("t", {
        "tool_sets": [{"tool_set": "t", "run_id": "r", "source_path": "x", "content_hash": "h",
                       "executor": {"kind": "bfcl", "classes": ["TicketAPI"]}, "options": {}}],
        "functions": [fn], "turns": [turn]})
    resource = LineageStoreResource(path=str(tmp_path / "lineage.duckdb"))
    result = no_bfcl_contamination(dg.build_asset_check_context(), lineage=resource)
    assert not result.passed and result.metadata["findings"].value == 1
    store.replace_partition("t", {"turns": [turn | {"query": "Open a ticket about the printer."}]})
    assert no_bfcl_contamination(dg.build_asset_check_context(), lineage=resource).passed


def test_default_empty_states_are_not_copies():
    assert copied_states([("p", "MathAPI", {})]) == []
