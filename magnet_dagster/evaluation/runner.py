"""Replaying the test split against the student, teacher-forced, and scoring each turn.

At every user turn the student gets the reference history so far and the tools of the
conversation; its reply is parsed with the project's one call parser and scored with the
one matcher (`tools/calls.py`): a call turn must match the reference calls (AST, order
free); a turn whose reference makes no call (`miss_func` / `miss_params`) must make none
and ask or say it cannot.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.synthesis.distillation import asks_or_refuses
from magnet_dagster.tools.calls import ToolCall, calls_mismatch
from magnet_dagster.tools.spec import FunctionSpec


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


def decision_points(messages: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(index of the user message, the reference assistant message that answers it)."""
    points = []
    for i, m in enumerate(messages):
        if m["role"] == "user" and i + 1 < len(messages) and messages[i + 1]["role"] == "assistant":
            points.append((i, messages[i + 1]))
    return points


async def evaluate_conversation(
    client: LLMClient, trajectory: dict[str, Any], specs: dict[str, FunctionSpec], max_tokens: int = 256,
) -> list[TurnVerdict]:
    messages = trajectory["messages"]
    points = decision_points(messages)

    async def one(turn_index: int, user_index: int, reference: dict[str, Any]) -> TurnVerdict:
        reply = await client.chat(LLMRequest(messages=messages[: user_index + 1], tools=trajectory["tools"],
                                             temperature=0.0, max_tokens=max_tokens))
        got_calls = reply.tool_calls()
        got = {"content": reply.content, "calls": [c.as_dict() for c in got_calls]}
        if not reply.ok:
            return TurnVerdict(trajectory["trajectory_id"], turn_index, "error", None, got, False,
                               f"student call failed: {reply.error}", reply.call_id)
        if reference.get("tool_calls"):
            expected = [ToolCall.from_dict(tc["function"]) for tc in reference["tool_calls"]]
            reason = calls_mismatch(expected, got_calls, specs)
            return TurnVerdict(trajectory["trajectory_id"], turn_index, "call",
                               [c.as_dict() for c in expected], got, reason is None, reason, reply.call_id)
        if got_calls:
            reason = f"expected no call (ask or refuse), got {[c.name for c in got_calls]}"
        elif not asks_or_refuses(reply.content):
            reason = "expected a question or a refusal"
        else:
            reason = None
        return TurnVerdict(trajectory["trajectory_id"], turn_index, "ask_or_refuse",
                           {"content": reference.get("content")}, got, reason is None, reason, reply.call_id)

    return list(await asyncio.gather(*(one(t, u, ref) for t, (u, ref) in enumerate(points))))


async def evaluate(client: LLMClient, trajectories: list[dict[str, Any]],
                   specs: dict[str, FunctionSpec]) -> list[TurnVerdict]:
    results = await asyncio.gather(*(evaluate_conversation(client, t, specs) for t in trajectories))
    return [v for conv in results for v in conv]


def summarise(verdicts: list[TurnVerdict]) -> dict[str, Any]:
    by_conv: dict[str, list[bool]] = defaultdict(list)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for v in verdicts:
        by_conv[v.trajectory_id].append(v.verdict)
        by_kind[v.kind].append(v.verdict)
    turns = [v.verdict for v in verdicts]
    return {
        "conversations": len(by_conv),
        "turns": len(turns),
        "turn_accuracy": round(sum(turns) / len(turns), 4) if turns else None,
        "conversation_accuracy": round(sum(all(c) for c in by_conv.values()) / len(by_conv), 4) if by_conv else None,
        "by_kind": {k: {"turns": len(v), "accuracy": round(sum(v) / len(v), 4)} for k, v in by_kind.items()},
    }


def verdict_row(v: TurnVerdict, tool_set: str, run_id: str, model: str) -> dict[str, Any]:
    return {
        "result_id": f"{run_id[:8]}-{v.trajectory_id}-{v.turn_index}",
        "tool_set": tool_set, "run_id": run_id, "student_model": model,
        "trajectory_id": v.trajectory_id, "turn_index": v.turn_index, "kind": v.kind,
        "expected": v.expected, "got": v.got, "verdict": v.verdict, "reason": v.reason,
        "llm_call_id": v.llm_call_id,
    }


def render_summary(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)
