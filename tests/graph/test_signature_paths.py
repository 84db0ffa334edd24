"""The `signature_paths` stage hands the judged edges' parameter mappings and the functions'
outputs to Split, and the graph judge's `nested` verdicts to Insert (no LLM call of its own)."""

from magnet_dagster.graph.paths import CALL, MISS_PARAMS
from magnet_dagster.graph.signature_paths import synthesize_paths
from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.tools.spec import FunctionSpec


def _spec(name, required, returns):
    parameters = {"type": "object", "properties": {p: {"type": "string"} for p in required}, "required": required}
    return FunctionSpec(name, f"{name}.", parameters, returns={"type": "object", "properties": returns})


SPECS = {
    "login": _spec("login", [], {"token": {"type": "string"}}),
    "find_order": _spec("find_order", ["session", "order_ref"], {"order_id": {"type": "string"}}),
    "refund": _spec("refund", ["order_id", "reason"], {"ok": {"type": "boolean"}}),
}
EDGES = [
    {"edge_id": "e1", "source": "login", "target": "find_order", "relation": "full", "mapping": {"session": "token"}},
    {"edge_id": "e2", "source": "find_order", "target": "refund", "relation": "partial", "mapping": {}},
]


def test_split_in_the_stage_drops_only_values_no_earlier_output_supplies(tmp_path):
    options = SynthesisOptions(
        split_p=1.0, merge_p=0.0, insert_p=0.0, walks_per_node=8, walk_steps=3, mix={"multi_turn": 1.0}
    )
    outcome = synthesize_paths(SPECS, EDGES, options, "shop", "r1")
    assert outcome.graph.edges["login", "find_order"]["mapping"] == {"session": "token"}
    dropped = []
    for path in outcome.paths:
        for i, turn in enumerate(path.turns):
            if turn.kind == MISS_PARAMS:
                nxt = path.turns[i + 1]
                assert nxt.kind == CALL and nxt.functions == turn.target
                earlier = [f for t in path.turns[:i] for f in t.functions]
                dropped.append((turn.target[0], turn.missing[0], tuple(earlier)))
    for target, param, earlier in dropped:
        assert param in SPECS[target].required
        if target == "find_order" and "login" in earlier:
            assert param == "order_ref", "session comes from login's token (the edge mapping)"
        if target == "refund" and "find_order" in earlier:
            assert param == "reason", "order_id is a field find_order returns"
    assert any(earlier for _, _, earlier in dropped), "some miss_params turn follows an earlier output"


def test_insert_nests_only_pairs_the_graph_judge_called_nested_with_that_call_as_lineage():
    options = SynthesisOptions(
        split_p=0.0, merge_p=0.0, insert_p=1.0, walks_per_node=4, walk_steps=1, mix={"multi_turn": 1.0}
    )
    edges = [
        {**EDGES[0], "nested": False, "llm_call_id": "judge-login"},
        {**EDGES[1], "nested": True, "llm_call_id": "judge-find"},
    ]
    outcome = synthesize_paths(SPECS, edges, options, "shop", "r1")
    nested = {p for path in outcome.paths for t in path.turns for p in t.nested}
    assert nested == {("find_order", "refund")}, "login -> find_order was judged not nested"
    assert outcome.nested_pairs == 1 and outcome.judged_pairs >= 1
    inserted = [r for r in outcome.rows if any(op.startswith("insert") for op in r["operations"])]
    assert inserted and all(r["llm_call_ids"] == ["judge-find"] for r in inserted)
    assert all(r["llm_call_ids"] == [] for r in outcome.rows if r not in inserted)
