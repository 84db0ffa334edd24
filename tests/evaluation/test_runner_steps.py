"""Evaluation as BFCL runs it: several steps per turn, the step limit, held-out functions, asks
that must name the missing parameter, and free-running turns judged by state and results with
the strict AST match kept beside. The students are scripted fakes (named as such); the tools
are BFCL's TicketAPI, executed for real through the dispatcher.
"""

import asyncio
import json

import pytest

from magnet_dagster.evaluation.runner import free_running, reference_turns, teacher_forced
from magnet_dagster.evaluation.scoring import (
    ASK_OR_REFUSE, FREE_RUNNING, TEACHER_FORCED, execution_mismatch, missing_results, no_call_mismatch, summarise,
    verdict_row,
)
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.executors import ExecutorFactory
from magnet_dagster.tools.formats import read_tool_set
from magnet_dagster.tools.messages import asks_for_parameters, mentions_parameter
from magnet_dagster.tools.messages import ADDITIONAL_FUNCTIONS_PROMPT, holdout_message, tool_messages
from tests.fakes import ScriptedFakeBackend

SEED = 7


# ------------------------------------------------------------------ the ask rule (pure)

def test_an_ask_counts_only_when_it_names_the_missing_parameter():
    assert asks_for_parameters("Which user id should I use?", ["user_id"])
    assert asks_for_parameters("Could you give me the USER-ID?", ["user_id"])
    assert asks_for_parameters("What is the user_id?", ["user_id"])
    assert asks_for_parameters("Which start dates do you mean?", ["startDate"])
    assert asks_for_parameters("I can't do that without the ticket id.", ["ticket_id"])
    assert not asks_for_parameters("Which ticket title should I use?", ["ticket_id"]), "another parameter"
    assert not asks_for_parameters("Which user?", ["user_id"]), "only part of the name"
    assert not asks_for_parameters("The user id is 4.", ["user_id"]), "not a question"
    assert not asks_for_parameters("Which user id and title?", ["user_id", "priority"]), "every one must be asked"
    assert not mentions_parameter("an idea", "id") and mentions_parameter("their IDs?", "id")


def test_no_call_turns_by_kind():
    assert no_call_mismatch("miss_params", [], "Which ticket id?", ["ticket_id"]) is None
    wrong = no_call_mismatch("miss_params", [], "Which title?", ["ticket_id"])
    assert wrong == "the reply does not ask for ['ticket_id']"
    assert "expected no call (a question)" in no_call_mismatch("miss_params", [ToolCall("get_ticket", {})], "", ["x"])
    assert no_call_mismatch("miss_func", [], "I cannot do that here.") is None
    assert no_call_mismatch("irrelevant", [], "Sure, done.") == "expected a question or a refusal"
    assert no_call_mismatch(ASK_OR_REFUSE, [], "Which one?") is None


def test_results_are_matched_as_bfcls_response_checker_does():
    assert missing_results(["a", "b"], ["b", "x", "a"]) == []
    assert missing_results(["a", "a"], ["a"]) == ["a"], "each found result is used once"
    assert execution_mismatch(False, 1, True, ["a"], ["a"]) == "no call made (the reference makes 1)"
    assert execution_mismatch(True, 1, False, ["a"], ["a"]) == "the tools' state differs from the reference's"
    assert "not among the student's" in execution_mismatch(True, 1, True, ["a"], ["b"])
    assert execution_mismatch(True, 1, None, ["a"], ["b", "a", "a"]) is None


# ------------------------------------------------------------------ a conversation with steps


def _tickets(tmp_path):
    folder = tmp_path / "tickets"
    folder.mkdir()
    (folder / "toolset.yaml").write_text("bfcl_classes: [TicketAPI]\n")
    source = read_tool_set(folder)
    specs = {f.name: f for f in source.functions}
    return specs, ExecutorFactory(source.executor, specs)


def _run(factory, calls):
    """The reference's outputs, from the conversation's starting state."""
    executor = factory.new(SEED)

    async def go():
        return [(await executor.execute(c)).output for c in calls]

    return asyncio.run(go())


def _conversation(specs, factory, tools=None):
    """Turn 0: create a ticket, then close it (a second step: it needs the new id).
    Turn 1: a `miss_params` turn (the ticket id is missing). Turn 2: the user gives it."""
    create = ToolCall("create_ticket", {"title": "VPN down"})
    (created,) = _run(factory, [create])
    ticket = created["id"]
    close, get = ToolCall("close_ticket", {"ticket_id": ticket}), ToolCall("get_ticket", {"ticket_id": ticket})
    out = _run(factory, [create, close, get])
    a1, r1 = tool_messages([create], out[:1], "0_0")
    a2, r2 = tool_messages([close], out[1:2], "0_1")
    a3, r3 = tool_messages([get], out[2:], "2_0")
    messages = [
        {"role": "system", "content": "You help with tickets."},
        {"role": "user", "content": "Open a ticket titled 'VPN down', then close it."},
        a1, *r1, a2, *r2, {"role": "assistant", "content": f"Ticket {ticket} was opened and closed."},
        {"role": "user", "content": "Show me the ticket."},
        {"role": "assistant", "content": "Which ticket id should I show?"},
        {"role": "user", "content": f"Ticket {ticket}."},
        a3, *r3, {"role": "assistant", "content": f"Ticket {ticket} is closed."},
    ]
    meta = [
        {"kind": "call", "missing": [], "functions": ["create_ticket", "close_ticket"], "holdout": []},
        {"kind": "miss_params", "missing": ["ticket_id"], "functions": [], "holdout": []},
        {"kind": "call", "missing": [], "functions": ["get_ticket"], "holdout": []},
    ]
    trajectory = {"trajectory_id": "steps", "path_id": "00000007", "messages": messages, "turn_meta": meta,
                  "tools": tools or [specs[n].openai_tool() for n in ("create_ticket", "close_ticket", "get_ticket")]}
    return trajectory, ticket


def _call(name, **arguments):
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _client(tmp_path, script, label="s"):
    backend = ScriptedFakeBackend(script)
    client = LLMClient(backend, LineageStore(tmp_path / f"{label}.duckdb"), tmp_path / label, concurrency=1).open()
    return backend, client


def _student(ask="Which ticket id should I show?", extra=None):
    """A scripted fake student that follows the conversation: create, then close with the id it
    got back; asks on turn 1 with `ask`; `extra` is one more call it makes after creating."""

    def script(request):
        last = request.messages[-1]
        if last["role"] == "user":
            text = last["content"]
            if "close it" in text:
                return _call("create_ticket", title="VPN down")
            if "Show me" in text:
                return ask
            return _call("get_ticket", ticket_id=int(text.split()[1].rstrip(".")))
        output = json.loads(last["content"])
        if last["name"] == "create_ticket":
            return _call(extra[0], **extra[1]) if extra else _call("close_ticket", ticket_id=output["id"])
        if extra and last["name"] == extra[0] and not any(m.get("name") == "close_ticket" for m in request.messages):
            ticket = next(json.loads(m["content"])["id"] for m in request.messages if m.get("name") == "create_ticket")
            return _call("close_ticket", ticket_id=ticket)
        return "Done."

    return script


def test_reference_turns_read_steps_and_turn_meta(tmp_path):
    specs, factory = _tickets(tmp_path)
    trajectory, _ = _conversation(specs, factory)
    turns = reference_turns(trajectory["messages"], trajectory["turn_meta"])
    assert [t.kind for t in turns] == ["call", "miss_params", "call"]
    assert [len(t.steps) for t in turns] == [2, 0, 1] and turns[1].missing == ("ticket_id",)
    assert [t.kind for t in reference_turns(trajectory["messages"])] == ["call", ASK_OR_REFUSE, "call"], "no meta"


def test_free_running_takes_steps_and_feeds_results_back(tmp_path):
    specs, factory = _tickets(tmp_path)
    trajectory, ticket = _conversation(specs, factory)
    backend, client = _client(tmp_path, _student())
    verdicts = asyncio.run(free_running(client, trajectory, specs, [], lambda: factory.new(SEED)))
    client.close()
    assert [(v.verdict, v.strict_match) for v in verdicts] == [(True, True)] * 3, [v.reason for v in verdicts]
    assert [v.call_steps for v in verdicts] == [2, 0, 1]
    assert verdicts[0].got["steps"] == [[{"name": "create_ticket", "arguments": {"title": "VPN down"}}],
                                        [{"name": "close_ticket", "arguments": {"ticket_id": ticket}}]]
    assert len(backend.requests) == 3 + 1 + 2, "create, close, answer; ask; get, answer"
    second = backend.requests[1].messages
    assert json.loads(second[-1]["content"])["id"] == ticket, "the step saw its own earlier result"


def test_an_extra_call_that_leaves_state_and_results_right_passes_as_in_bfcl(tmp_path):
    specs, factory = _tickets(tmp_path)
    trajectory, ticket = _conversation(specs, factory)
    _, client = _client(tmp_path, _student(extra=("get_ticket", {"ticket_id": ticket})))
    verdicts = asyncio.run(free_running(client, trajectory, specs, [], lambda: factory.new(SEED)))
    client.close()
    first = verdicts[0]
    assert first.verdict and first.state_match, first.reason
    assert first.strict_match is False and "expected 2 call(s), got 3" in first.strict_reason
    row = verdict_row(first, "tickets", "run-1234", "student")
    assert row["verdict"] is True and row["got"]["strict_match"] is False and row["got"]["call_steps"] == 3
    summary = summarise(verdicts)[FREE_RUNNING]
    assert summary["turn_accuracy"] == 1.0 and summary["strict_turn_accuracy"] == round(2 / 3, 4)
    assert summary["conversation_accuracy"] == 1.0 and summary["strict_conversation_accuracy"] == 0.0
    assert summary["by_kind"]["call"] == {"turns": 2, "accuracy": 1.0, "strict_accuracy": 0.5}


def test_a_wrong_argument_is_wrong_by_state_and_by_ast(tmp_path):
    specs, factory = _tickets(tmp_path)
    trajectory, ticket = _conversation(specs, factory)

    def script(request):
        last = request.messages[-1]
        if last["role"] == "tool" and last["name"] == "create_ticket":
            return _call("close_ticket", ticket_id=ticket - 1)
        return _student()(request)

    _, client = _client(tmp_path, script)
    verdicts = asyncio.run(free_running(client, trajectory, specs, [], lambda: factory.new(SEED)))
    client.close()
    assert not verdicts[0].verdict and verdicts[0].state_match is False and not verdicts[0].strict_match


@pytest.mark.parametrize(("ask", "right"), [("Which ticket id should I show?", True),
                                            ("Which ticket title should I show?", False)])
def test_an_ask_for_another_parameter_is_scored_wrong(tmp_path, ask, right):
    specs, factory = _tickets(tmp_path)
    trajectory, _ = _conversation(specs, factory)
    for mode in (TEACHER_FORCED, FREE_RUNNING):
        _, client = _client(tmp_path, _student(ask=ask), label=mode)
        if mode == FREE_RUNNING:
            verdicts = asyncio.run(free_running(client, trajectory, specs, [], lambda: factory.new(SEED)))
        else:
            verdicts = asyncio.run(teacher_forced(client, trajectory, specs, []))
        client.close()
        assert verdicts[1].kind == "miss_params" and verdicts[1].verdict is right, (mode, verdicts[1].reason)
        if not right:
            assert verdicts[1].reason == "the reply does not ask for ['ticket_id']"


def test_teacher_forced_asks_for_every_step_with_the_reference_history(tmp_path):
    specs, factory = _tickets(tmp_path)
    trajectory, ticket = _conversation(specs, factory)
    messages = trajectory["messages"]
    backend, client = _client(tmp_path, _student())
    verdicts = asyncio.run(teacher_forced(client, trajectory, specs, []))
    client.close()
    assert [v.verdict for v in verdicts] == [True, True, True]
    assert verdicts[0].call_steps == 2 and len(backend.requests) == 4
    histories = sorted((r.messages for r in backend.requests), key=len)
    assert histories[0] == messages[:2] and histories[1] == messages[:4], "step 2 sees step 1 and its result"

    def wrong_second_step(request):
        if request.messages[-1]["role"] == "tool":
            return _call("close_ticket", ticket_id=ticket + 5)
        return _student()(request)

    _, client = _client(tmp_path, wrong_second_step, label="wrong")
    verdicts = asyncio.run(teacher_forced(client, trajectory, specs, []))
    client.close()
    assert not verdicts[0].verdict and verdicts[0].reason.startswith("step 2/2: close_ticket: argument 'ticket_id'")


def test_a_student_that_keeps_calling_is_forced_to_quit_and_the_conversation_ends(tmp_path):
    specs, factory = _tickets(tmp_path)
    trajectory, ticket = _conversation(specs, factory)
    backend, client = _client(tmp_path, lambda request: _call("get_ticket", ticket_id=ticket))
    verdicts = asyncio.run(free_running(client, trajectory, specs, [], lambda: factory.new(SEED), max_steps=2))
    client.close()
    assert len(backend.requests) == 3, "BFCL's count > limit: quit after the third calling step"
    assert verdicts[0].forced_quit and verdicts[0].reason == "forced to quit after 2 steps"
    assert [v.verdict for v in verdicts] == [False] * 3
    assert all(v.reason.startswith("not reached") and v.got is None for v in verdicts[1:])
    assert summarise(verdicts)[FREE_RUNNING]["forced_quits"] == 1


def test_held_out_functions_follow_bfcls_convention_in_both_modes(tmp_path):
    """Turn 0 asks for something only a held-out function does (`miss_func`); turn 1 is BFCL's
    held-out turn: no query, the function added, BFCL's prompt as the user message."""
    specs, factory = _tickets(tmp_path)
    create = ToolCall("create_ticket", {"title": "VPN down"})
    assistant, results = tool_messages([create], _run(factory, [create]), "1_0")
    trajectory = {
        "trajectory_id": "holdout", "path_id": "00000007",
        "tools": [specs["get_ticket"].openai_tool()],
        "messages": [{"role": "user", "content": "Open a ticket titled 'VPN down'."},
                     {"role": "assistant", "content": "I cannot open tickets with the functions I have."},
                     holdout_message([specs["create_ticket"]]),
                     assistant, *results, {"role": "assistant", "content": "Opened."}],
        "turn_meta": [{"kind": "miss_func", "missing": [], "functions": [], "holdout": []},
                      {"kind": "call", "missing": [], "functions": ["create_ticket"], "holdout": ["create_ticket"]}],
    }

    def script(request):
        last = request.messages[-1]
        if last["role"] == "user" and last["content"] == ADDITIONAL_FUNCTIONS_PROMPT:
            return _call("create_ticket", title="VPN down")
        return "Done." if last["role"] == "tool" else "I cannot do that with these functions."

    for mode in (TEACHER_FORCED, FREE_RUNNING):
        backend, client = _client(tmp_path, script, label=mode)
        if mode == FREE_RUNNING:
            verdicts = asyncio.run(free_running(client, trajectory, specs, [], lambda: factory.new(SEED)))
        else:
            verdicts = asyncio.run(teacher_forced(client, trajectory, specs, []))
        client.close()
        assert [(v.kind, v.verdict) for v in verdicts] == [("miss_func", True), ("call", True)], mode
        first, second = backend.requests[0], backend.requests[1]
        assert [t["function"]["name"] for t in first.tools] == ["get_ticket"]
        assert [t["function"]["name"] for t in second.tools] == ["get_ticket", "create_ticket"]
        assert second.messages[-1] == {"role": "user", "content": ADDITIONAL_FUNCTIONS_PROMPT}
        assert all("create_ticket" not in (m.get("content") or "") for m in second.messages if m["role"] == "user")
