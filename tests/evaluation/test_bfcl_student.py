"""The BFCL student loop: tools per turn, calls executed through the dispatcher, bfcl's verdict, leaderboard layout.

The student here is a scripted fake (named as such) that answers with BFCL's ground truth.
"""

import asyncio
import json

from magnet_dagster.evaluation.bfcl_bridge import (
    bfcl_verdict, class_specs, leaderboard_table, load_category, run_student_on_entry, turn_tools,
)
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.calls import parse_python_call
from tests.fakes import ScriptedFakeBackend


def ground_truth_student(entry, gt):
    """Replies each turn's ground-truth calls in one step, then a plain answer."""
    specs = class_specs(entry["involved_classes"])
    order = lambda n: list(specs[n].properties) if n in specs else None  # noqa: E731
    state = {"turn": -1, "answered": True}

    def script(request):
        users = sum(1 for m in request.messages if m["role"] == "user")
        if users - 1 != state["turn"]:
            state.update(turn=users - 1, answered=False)
        if state["answered"] or not gt[state["turn"]]:
            return "Done."
        state["answered"] = True
        calls = [parse_python_call(c, order) for c in gt[state["turn"]]]
        return "".join(f"<tool_call>{json.dumps(c.as_dict())}</tool_call>" for c in calls)

    return ScriptedFakeBackend(script)


def test_ground_truth_student_is_judged_valid_by_bfcl(tmp_path):
    entry, gt = load_category("multi_turn_base")[2]
    backend = ground_truth_student(entry, gt)
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j", concurrency=1).open()
    decoded = asyncio.run(run_student_on_entry(client, entry, "multi_turn_base"))
    client.close()
    assert len(decoded) == len(gt)
    assert bfcl_verdict(decoded, gt, entry, "multi_turn_base")["valid"] is True
    silent = [[] for _ in gt]
    assert bfcl_verdict(silent, gt, entry, "multi_turn_base")["valid"] is False


def test_missed_functions_appear_only_from_their_turn():
    entry, _ = load_category("multi_turn_miss_func")[0]
    specs = class_specs(entry["involved_classes"])
    (turn, names), = entry["missed_function"].items()
    before = {t["function"]["name"] for t in turn_tools(entry, specs, int(turn) - 1)}
    after = {t["function"]["name"] for t in turn_tools(entry, specs, int(turn))}
    assert not set(names) & before and set(names) <= after
    assert not set(entry.get("excluded_function") or []) & after


def test_leaderboard_layout():
    table = leaderboard_table({"multi_turn_base": [True, False], "multi_turn_miss_func": [True]}, "student")
    assert list(table[0]) == ["Model", "Multi Turn Overall Acc", "Base", "Miss Func", "Miss Param", "Long Context"]
    assert table[0]["Base"] == "50.00%" and table[0]["Multi Turn Overall Acc"] == "75.00%"
    assert table[0]["Long Context"] == "n/a"
