"""The `signature_paths` stage hands the judged edges' parameter mappings and the functions'
outputs to Split (scripted fake nested-call judge, a fake for control flow)."""

import asyncio

from magnet_dagster.graph.paths import CALL, MISS_PARAMS
from magnet_dagster.graph.signature_paths import synthesize_paths
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.tools.spec import FunctionSpec
from tests.fakes import ScriptedFakeBackend


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
    client = LLMClient(
        ScriptedFakeBackend(lambda r: {"nested": False, "reason": "no"}),
        LineageStore(tmp_path / "l.duckdb"),
        tmp_path / "journal",
    ).open()
    outcome = asyncio.run(synthesize_paths(client, SPECS, EDGES, options, "shop", "r1"))
    client.close()
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
