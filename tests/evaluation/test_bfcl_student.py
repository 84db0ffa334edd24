"""The BFCL student loop as bfcl's harness runs it: tools per turn, held-out functions, steps
until an answer without a call or the step limit, calls executed through the dispatcher,
bfcl's verdict, the leaderboard layout with counts and intervals.

The students here are scripted fakes (named as such): one answers with BFCL's ground truth.
"""

import asyncio
import json

from magnet_dagster.evaluation.bfcl_bridge import (
    bfcl_verdict, category_scores, class_specs, default_entries_per_category, leaderboard_table, load_category,
    run_student_on_entry, turn_tools, wilson_interval,
)
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.calls import parse_python_call
from magnet_dagster.tools.messages import ADDITIONAL_FUNCTIONS_PROMPT
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


def test_tools_per_turn_are_bfcls_own():
    """The tools offered at each turn are those bfcl's harness offers: every function of the
    involved classes in func-doc order less the held-out ones (bfcl's own
    `populate_test_cases_with_predefined_functions`), the held-out ones appended at their turn."""
    import copy

    from magnet_dagster.evaluation.bfcl_bridge import _ensure_project_root

    _ensure_project_root()
    from bfcl_eval.utils import populate_test_cases_with_predefined_functions

    for entry, _ in load_category("multi_turn_miss_func")[:20]:
        specs = class_specs(entry["involved_classes"])
        theirs = populate_test_cases_with_predefined_functions([copy.deepcopy(entry)])[0]
        functions = [f["name"] for f in theirs["function"]]
        for turn in range(len(entry["question"])):
            if str(turn) in theirs["missed_function"]:
                functions += [f["name"] for f in theirs["missed_function"][str(turn)]]
            assert [t["function"]["name"] for t in turn_tools(entry, specs, turn)] == functions, (entry["id"], turn)


def test_held_out_turn_sends_bfcls_prompt_and_adds_the_functions(tmp_path):
    entry, gt = load_category("multi_turn_miss_func")[0]
    (turn, names), = entry["missed_function"].items()
    backend = ground_truth_student(entry, gt)
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j", concurrency=1).open()
    decoded = asyncio.run(run_student_on_entry(client, entry, "multi_turn_miss_func"))
    client.close()
    first_at_turn = next(r for r in backend.requests if sum(m["role"] == "user" for m in r.messages) == int(turn) + 1)
    assert first_at_turn.messages[-1] == {"role": "user", "content": ADDITIONAL_FUNCTIONS_PROMPT}
    assert set(names) <= {t["function"]["name"] for t in first_at_turn.tools}
    before = next(r for r in backend.requests if sum(m["role"] == "user" for m in r.messages) == int(turn))
    assert not set(names) & {t["function"]["name"] for t in before.tools}
    assert bfcl_verdict(decoded, gt, entry, "multi_turn_miss_func")["valid"] is True


def test_a_student_that_never_stops_calling_is_forced_to_quit(tmp_path):
    """BFCL's step limit: after more than `max_steps` calling steps the entry ends (and fails)."""
    entry, _ = load_category("multi_turn_base")[0]
    backend = ScriptedFakeBackend(lambda request: '<tool_call>{"name": "pwd", "arguments": {}}</tool_call>')
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j", concurrency=1).open()
    decoded = asyncio.run(run_student_on_entry(client, entry, "multi_turn_base", max_steps=3))
    client.close()
    assert len(decoded) == 1 and len(decoded[0]) == 4, "stopped in the first turn after 3 + 1 calling steps"
    assert len(backend.requests) == 4
    assert backend.requests[-1].messages[-1]["content"] == '{"current_working_directory": "/workspace"}', (
        "string results are fed back as bfcl's harness feeds them")


def test_leaderboard_layout_with_counts_and_intervals():
    table = leaderboard_table({"multi_turn_base": [True, False], "multi_turn_miss_func": [True]}, "student")
    assert list(table[0]) == ["Model", "Multi Turn Overall Acc", "Base", "Miss Func", "Miss Param", "Long Context"]
    assert table[0]["Base"] == "50.00%" and table[0]["Multi Turn Overall Acc"] == "75.00%"
    assert table[0]["Long Context"] == "n/a"
    assert table[1]["Model"] == "entries" and table[1]["Base"] == 2 and table[1]["Multi Turn Overall Acc"] == 3
    assert table[2]["Base"] == "9.5%–90.5%" and table[2]["Long Context"] == "n/a"


def test_wilson_interval():
    low, high = wilson_interval(50, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    assert wilson_interval(0, 10)[0] == 0.0 and 0 < wilson_interval(0, 10)[1] < 0.31
    assert wilson_interval(0, 0) is None
    scores = category_scores({"multi_turn_base": [True] * 3 + [False]})
    assert scores == [{"category": "multi_turn_base", "entries": 4, "correct": 3, "accuracy": 0.75,
                       "ci95_low": 0.3006, "ci95_high": 0.9544}]


def test_all_entries_by_default_only_for_a_vllm_student():
    assert default_entries_per_category("vllm") is None
    assert default_entries_per_category("local") == 3
    assert len(load_category("multi_turn_base")[:None]) == 200


def test_the_step_limit_and_the_holdout_prompt_are_bfcls():
    from magnet_dagster.evaluation.bfcl_bridge import _ensure_project_root
    from magnet_dagster.evaluation.runner import MAX_STEPS_PER_TURN

    _ensure_project_root()
    from bfcl_eval.constants import default_prompts

    assert MAX_STEPS_PER_TURN == default_prompts.MAXIMUM_STEP_LIMIT == 20
    assert ADDITIONAL_FUNCTIONS_PROMPT == default_prompts.DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
