"""Scoring rules and both replay modes, with a scripted fake student (named as such)."""

import asyncio
import json

from magnet_dagster.evaluation.runner import free_running, teacher_forced
from magnet_dagster.evaluation.scoring import FREE_RUNNING, score_turn, summarise
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.executors import ExecutorFactory
from magnet_dagster.tools.formats import read_tool_set
from tests.fakes import ScriptedFakeBackend


def _call(name, **args):
    return {"id": "c", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def _tickets(tmp_path):
    folder = tmp_path / "tickets"
    folder.mkdir()
    (folder / "toolset.yaml").write_text("bfcl_classes: [TicketAPI]\n")
    source = read_tool_set(folder)
    return {f.name: f for f in source.functions}, source.executor


TRAJ = {
    "trajectory_id": "t1", "tools": [],
    "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Open a ticket titled 'VPN down'."},
        {"role": "assistant", "content": None, "tool_calls": [_call("create_ticket", title="VPN down")]},
        {"role": "tool", "tool_call_id": "c", "content": "{}"},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Close it now."},
        {"role": "assistant", "content": "Which ticket id should I close?"},
    ],
}


def test_score_turn_rules(tmp_path):
    specs, _ = _tickets(tmp_path)
    ref_call = TRAJ["messages"][2]
    assert score_turn(ref_call, [ToolCall("create_ticket", {"title": "vpn  DOWN"})], "", specs)[2] is None
    assert "expected 1 call" in score_turn(ref_call, [], "ok", specs)[2]
    ask = TRAJ["messages"][6]
    assert score_turn(ask, [], "Which ticket?", specs)[2] is None
    assert score_turn(ask, [], "Closed it.", specs)[2] == "expected a question or a refusal"
    assert "expected no call" in score_turn(ask, [ToolCall("close_ticket", {"ticket_id": 1})], "", specs)[2]


def _student(answers):
    replies = iter(answers)
    return ScriptedFakeBackend(lambda request: next(replies))


def test_teacher_forced_scores_each_turn(tmp_path):
    specs, _ = _tickets(tmp_path)
    backend = _student(['<tool_call>{"name": "create_ticket", "arguments": {"title": "VPN down"}}</tool_call>',
                        "Sure, which ticket?"])
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j", concurrency=1).open()
    verdicts = asyncio.run(teacher_forced(client, TRAJ, specs, ["split_miss_params"]))
    client.close()
    assert [v.verdict for v in verdicts] == [True, True]
    assert backend.requests[1].messages == TRAJ["messages"][:6], "history comes from the reference"
    summary = summarise(verdicts)["teacher_forced"]
    assert summary["conversation_accuracy"] == 1.0
    assert summary["by_operation"]["split_miss_params"]["turns"] == 2


def test_free_running_executes_student_calls_and_compares_state(tmp_path):
    specs, executor = _tickets(tmp_path)
    factory = ExecutorFactory(executor, specs)
    right = _student(['{"name": "create_ticket", "arguments": {"title": "VPN down"}}', "Which one?"])
    wrong = _student(['{"name": "create_ticket", "arguments": {"title": "VPN down", "priority": 5}}', "Which one?"])
    results = {}
    for label, backend in (("right", right), ("wrong", wrong)):
        client = LLMClient(backend, LineageStore(tmp_path / f"{label}.duckdb"), tmp_path / label, concurrency=1).open()
        results[label] = asyncio.run(free_running(client, TRAJ, specs, [], lambda: factory.new(42)))
        client.close()
    assert [v.mode for v in results["right"]] == [FREE_RUNNING, FREE_RUNNING]
    assert results["right"][0].state_match is True and results["right"][0].verdict
    assert results["wrong"][0].state_match is False and not results["wrong"][0].verdict
    second_request = right.requests[1].messages
    assert second_request[2]["tool_calls"][0]["function"]["name"] == "create_ticket"
    assert json.loads(second_request[3]["content"])["title"] == "VPN down", "the student's own output was fed back"


def test_a_withheld_function_is_offered_once_announced():
    from magnet_dagster.evaluation.runner import student_view, tools_at
    from magnet_dagster.tools.messages import ADDITIONAL_FUNCTIONS_PROMPT, holdout_message
    from magnet_dagster.tools.spec import FunctionSpec

    late = FunctionSpec("close_ticket", "Close.", {"type": "object", "properties": {}})
    base = [{"type": "function", "function": {"name": "get_ticket", "parameters": {"type": "object"}}}]
    before = [{"role": "user", "content": "close it"}]
    after = before + [{"role": "assistant", "content": "I can't."}, holdout_message([late])]
    assert [t["function"]["name"] for t in tools_at(before, base)] == ["get_ticket"]
    assert [t["function"]["name"] for t in tools_at(after, base)] == ["get_ticket", "close_ticket"]
    assert student_view(after)[-1] == {"role": "user", "content": ADDITIONAL_FUNCTIONS_PROMPT}, "BFCL's FC form"
