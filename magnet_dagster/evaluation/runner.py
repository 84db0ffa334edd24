"""Replaying the test split against the student, and scoring each turn.

Two modes. Teacher-forced: at every user turn the student gets the reference history.
Free-running (executable tools only): the student's own calls are executed through the
allow-list dispatcher and their outputs fed back, and the tools' state after each turn is
compared with the state the reference calls produce from the same starting state.
Replies are parsed with the project's one call parser and scored with its one matcher
(`tools/calls.py`): a call turn must match the reference calls (AST, order free); a turn
whose reference makes no call (`miss_func` / `miss_params`) must make none and ask or
say it cannot.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.tools.calls import ToolCall, calls_mismatch
from magnet_dagster.tools.executors import Executor, ExecutorFactory, conversation_seed
from magnet_dagster.tools.messages import announced_tools, asks_or_refuses, tool_messages
from magnet_dagster.tools.spec import FunctionSpec

TEACHER_FORCED, FREE_RUNNING = "teacher_forced", "free_running"


@dataclass
class TurnVerdict:
    trajectory_id: str
    turn_index: int
    kind: str
    expected: Any
    got: Any
    verdict: bool
    reason: str | None
    llm_call_id: str
    mode: str = TEACHER_FORCED
    operations: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    state_match: bool | None = None


def decision_points(messages: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(index of the user message, the reference assistant message that answers it)."""
    return [
        (i, messages[i + 1])
        for i, m in enumerate(messages)
        if m["role"] == "user" and i + 1 < len(messages) and messages[i + 1]["role"] == "assistant"
    ]


def tools_at(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation's tools plus those announced so far (a `miss_func` function arrives later)."""
    offered = list(tools)
    names = {t["function"]["name"] for t in offered}
    for tool in announced_tools(messages):
        if tool["function"]["name"] not in names:
            offered.append(tool)
            names.add(tool["function"]["name"])
    return offered


def score_turn(
    reference: dict[str, Any], got_calls: list[ToolCall], content: str, specs: dict[str, FunctionSpec]
) -> tuple[str, Any, str | None]:
    """(kind, expected, reason or None when right) for one student turn."""
    if reference.get("tool_calls"):
        expected = [ToolCall.from_dict(tc["function"]) for tc in reference["tool_calls"]]
        return "call", [c.as_dict() for c in expected], calls_mismatch(expected, got_calls, specs)
    if got_calls:
        reason = f"expected no call (ask or refuse), got {[c.name for c in got_calls]}"
    elif not asks_or_refuses(content):
        reason = "expected a question or a refusal"
    else:
        reason = None
    return "ask_or_refuse", {"content": reference.get("content")}, reason


def _categories(reference: dict[str, Any], specs: dict[str, FunctionSpec]) -> list[str]:
    names = [tc["function"]["name"] for tc in reference.get("tool_calls") or []]
    return sorted({specs[n].category or "-" for n in names if n in specs})


async def teacher_forced(
    client: LLMClient,
    trajectory: dict[str, Any],
    specs: dict[str, FunctionSpec],
    operations: list[str],
    max_tokens: int = 256,
) -> list[TurnVerdict]:
    messages = trajectory["messages"]

    async def one(turn_index: int, user_index: int, reference: dict[str, Any]) -> TurnVerdict:
        history = messages[: user_index + 1]
        reply = await client.chat(
            LLMRequest(
                messages=history, tools=tools_at(history, trajectory["tools"]), temperature=0.0, max_tokens=max_tokens
            )
        )
        return _verdict(trajectory, turn_index, reference, reply, specs, operations, TEACHER_FORCED)

    points = decision_points(messages)
    return list(await asyncio.gather(*(one(t, u, ref) for t, (u, ref) in enumerate(points))))


def _verdict(
    trajectory: dict[str, Any],
    turn_index: int,
    reference: dict[str, Any],
    reply: Any,
    specs: dict[str, FunctionSpec],
    operations: list[str],
    mode: str,
) -> TurnVerdict:
    got_calls = reply.tool_calls()
    got = {"content": reply.content, "calls": [c.as_dict() for c in got_calls]}
    if not reply.ok:
        return TurnVerdict(
            trajectory["trajectory_id"],
            turn_index,
            "error",
            None,
            got,
            False,
            f"student call failed: {reply.error}",
            reply.call_id,
            mode,
            operations,
        )
    kind, expected, reason = score_turn(reference, got_calls, reply.content, specs)
    return TurnVerdict(
        trajectory["trajectory_id"],
        turn_index,
        kind,
        expected,
        got,
        reason is None,
        reason,
        reply.call_id,
        mode,
        operations,
        _categories(reference, specs),
    )


async def free_running(
    client: LLMClient,
    trajectory: dict[str, Any],
    specs: dict[str, FunctionSpec],
    operations: list[str],
    new_executor: Callable[[], Executor],
    max_tokens: int = 256,
) -> list[TurnVerdict]:
    """The student's calls run and feed its own history; state is compared after each turn."""
    reference_msgs = trajectory["messages"]
    points = decision_points(reference_msgs)
    student, oracle = new_executor(), new_executor()
    history: list[dict[str, Any]] = []
    cursor = 0
    verdicts = []
    try:
        for turn_index, (user_index, reference) in enumerate(points):
            history.extend(m for m in reference_msgs[cursor : user_index + 1] if m["role"] in ("system", "user"))
            cursor = user_index + 1
            reply = await client.chat(
                LLMRequest(
                    messages=list(history),
                    tools=tools_at(history, trajectory["tools"]),
                    temperature=0.0,
                    max_tokens=max_tokens,
                )
            )
            verdict = _verdict(trajectory, turn_index, reference, reply, specs, operations, FREE_RUNNING)
            calls = reply.tool_calls() if reply.ok else []
            outputs = [(await student.execute(c)).output for c in calls]
            for tc in reference.get("tool_calls") or []:
                await oracle.execute(ToolCall.from_dict(tc["function"]))
            if calls:
                assistant, results = tool_messages(calls, outputs, turn_index)
                history += [assistant, *results]
            elif reply.ok:
                history.append({"role": "assistant", "content": reply.content})
            student_state = student.state()
            if student_state is not None:
                verdict.state_match = student_state == oracle.state()
                if verdict.verdict and not verdict.state_match:
                    verdict.verdict, verdict.reason = False, "calls matched but the tools' state differs"
            verdicts.append(verdict)
    finally:
        student.close()
        oracle.close()
    return verdicts


def summarise(verdicts: list[TurnVerdict]) -> dict[str, Any]:
    """Turn and conversation accuracy, per mode, with breakdowns by kind, operation and category."""
    out: dict[str, Any] = {}
    for mode in sorted({v.mode for v in verdicts}):
        vs = [v for v in verdicts if v.mode == mode]
        by_conv: dict[str, list[bool]] = defaultdict(list)
        groups: dict[str, dict[str, list[bool]]] = {
            "kind": defaultdict(list),
            "operation": defaultdict(list),
            "category": defaultdict(list),
        }
        for v in vs:
            by_conv[v.trajectory_id].append(v.verdict)
            groups["kind"][v.kind].append(v.verdict)
            for op in set(v.operations) or {"none"}:
                groups["operation"][op].append(v.verdict)
            for cat in v.categories:
                groups["category"][cat].append(v.verdict)
        states = [v.state_match for v in vs if v.state_match is not None]
        out[mode] = {
            "conversations": len(by_conv),
            "turns": len(vs),
            "turn_accuracy": _rate([v.verdict for v in vs]),
            "conversation_accuracy": _rate([all(c) for c in by_conv.values()]),
            "state_match": _rate(states),
            **{
                f"by_{name}": {k: {"turns": len(x), "accuracy": _rate(x)} for k, x in sorted(g.items())}
                for name, g in groups.items()
            },
        }
    return out


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def verdict_row(v: TurnVerdict, tool_set: str, run_id: str, model: str) -> dict[str, Any]:
    return {
        "result_id": f"{run_id[:8]}-{v.mode}-{v.trajectory_id}-{v.turn_index}",
        "tool_set": tool_set,
        "run_id": run_id,
        "student_model": model,
        "trajectory_id": v.trajectory_id,
        "turn_index": v.turn_index,
        "kind": v.kind,
        "expected": v.expected,
        "got": v.got,
        "verdict": v.verdict,
        "reason": v.reason,
        "llm_call_id": v.llm_call_id,
        "mode": v.mode,
        "operations": v.operations,
        "categories": v.categories,
        "state_match": v.state_match,
    }


async def evaluate(
    client: LLMClient, tests: list[dict[str, Any]], specs: dict[str, FunctionSpec], factory: ExecutorFactory
) -> list[TurnVerdict]:
    """Every test conversation teacher-forced, and free-running too when its tools really execute."""
    jobs = [teacher_forced(client, t, specs, t["operations"]) for t in tests]
    if factory.executable:
        jobs += [free_running(client, t, specs, t["operations"], _executors(factory, t["path_id"])) for t in tests]
    return [v for conv in await asyncio.gather(*jobs) for v in conv]


def _executors(factory: ExecutorFactory, path_id: str) -> Callable[[], Executor]:
    """New executors for one conversation, each from that path's starting state."""
    seed = conversation_seed(path_id)
    return lambda: factory.new(seed)
