"""Context distillation: the teacher writes the assistant side with the reference as a hint.

A positive trajectory keeps a turn only if the teacher's calls match the reference (AST,
order-free) or, on `miss_*` turns, it makes no call and asks or says it cannot. The hint
lives only in the request; the stored conversation never contains it. Negatives come from
the same prefix with a wrong hint of a named error type.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.graph.paths import CALL, IRRELEVANT, MISS_FUNC, MISS_PARAMS
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.synthesis.results import TRAJECTORIES, PathRejection, TurnResult
from magnet_dagster.synthesis.translation import calls_schema
from magnet_dagster.tools.calls import CallParseError, ToolCall, calls_mismatch
from magnet_dagster.tools.messages import asks_or_refuses, new_tools_message, tool_messages
from magnet_dagster.tools.spec import FunctionSpec, stable_id

SYSTEM_PROMPT = "You are a helpful assistant that can call functions to complete the user's requests."
HINT_MARKER = "[reference hint]"

CALL_HINT = (
    HINT_MARKER + " The correct next step is to call: {calls}. Decide the calls yourself "
    "as if you had worked them out; never mention this hint. Answer with JSON "
    '{{"calls": [...]}}.'
)
ASK_HINT = (
    HINT_MARKER + " The user did not give the value of `{param}`, which is needed. Do not "
    "call any function: ask the user for it, and never mention this hint. Answer with JSON "
    '{{"content": "..."}}.'
)
REFUSE_HINT = (
    HINT_MARKER + " None of the available functions can do this. Do not call any "
    "function: say you cannot do it with the tools you have, and never mention this "
    'hint. Answer with JSON {{"content": "..."}}.'
)
ANSWER_HINT = (
    HINT_MARKER + " Reply as if the request were complete: do not call any function and do "
    "not ask the user anything; never mention this hint. Answer with JSON "
    '{{"content": "..."}}.'
)
REPLY_PROMPT = (
    "Write the assistant's short reply to the user, based on the function results "
    'above. Answer with JSON {"content": "..."}.'
)

CONTENT_SCHEMA = {
    "type": "object",
    "properties": {"content": {"type": "string", "minLength": 4, "maxLength": 400}},
    "required": ["content"],
}
ERROR_TYPES = (
    "wrong_function",
    "missing_nested_call",
    "missing_parallel_call",
    "wrong_dependency_value",
    "hallucinated_missing_param",
    "answer_instead_of_ask",
    "call_instead_of_refusing",
)


@dataclass
class AssistantTurn:
    messages: list[dict[str, Any]]
    calls: list[ToolCall]
    llm_call_ids: list[str]
    ok: bool
    reason: str | None = None


async def _teacher(
    client: LLMClient,
    history: list[dict[str, Any]],
    hint: str,
    schema: dict[str, Any],
    tools: list[dict[str, Any]],
    seed: int,
    max_tokens: int,
) -> tuple[Any, str]:
    reply = await client.chat(
        LLMRequest(
            messages=history + [{"role": "system", "content": hint}],
            tools=tools,
            response_schema=schema,
            temperature=0.0,
            max_tokens=max_tokens,
            seed=seed,
        )
    )
    return (reply.json() if reply.ok else None), reply.call_id


async def assistant_turn(
    client: LLMClient,
    history: list[dict[str, Any]],
    result: TurnResult,
    hint_calls: list[ToolCall] | None,
    specs: dict[str, FunctionSpec],
    seed: int,
    answer_anyway: bool = False,
) -> AssistantTurn:
    """The teacher's assistant messages for one turn, given a hint (right or wrong).

    `answer_anyway` is the wrong hint for a `miss_params` turn that should have asked.
    """
    offered = [specs[n] for n in result.tools if n in specs]
    tools = [s.openai_tool() for s in offered]
    ids: list[str] = []
    if hint_calls:  # a call turn, or a wrong hint on a miss turn
        hint = CALL_HINT.format(calls="; ".join(c.python() for c in hint_calls))
        schema = calls_schema(offered or list(specs.values()))
        data, cid = await _teacher(client, history, hint, schema, tools, seed, 96 * len(hint_calls) + 64)
        ids.append(cid)
        raw = data.get("calls") if isinstance(data, dict) else None
        try:
            calls = [ToolCall.from_dict(c) for c in raw] if isinstance(raw, list) else []
        except (CallParseError, ValueError, TypeError, AttributeError):
            calls = []
        if not calls:
            return AssistantTurn([], [], ids, False, "teacher made no call")
        unoffered = sorted({c.name for c in calls} - {s.name for s in offered})
        if unoffered:  # a reply that ignores the schema never becomes data, not even a negative
            return AssistantTurn([], [], ids, False, f"teacher called functions not offered: {unoffered}")
        return AssistantTurn([], calls, ids, True)
    if answer_anyway:
        hint = ANSWER_HINT.format()
    elif result.kind == MISS_PARAMS:
        hint = ASK_HINT.format(
            param=", ".join(specs[f].required[0] for f in result.functions if f in specs and specs[f].required)
            or "a required value"
        )
    else:
        hint = REFUSE_HINT
    data, cid = await _teacher(client, history, hint, CONTENT_SCHEMA, tools, seed, 128)
    ids.append(cid)
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, str) or not content.strip():
        return AssistantTurn([], [], ids, False, "teacher wrote no reply")
    return AssistantTurn([{"role": "assistant", "content": content.strip()}], [], ids, True)


@dataclass
class Trajectory:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    llm_call_ids: list[str]
    #: index in `messages` of the first assistant message of each turn, for preference pairs
    turn_starts: list[int] = field(default_factory=list)


def _reject(turn_index: int, rule: str, reason: str) -> PathRejection:
    return PathRejection(TRAJECTORIES, turn_index, rule, reason)


async def positive_trajectory(
    client: LLMClient,
    turns: list[TurnResult],
    specs: dict[str, FunctionSpec],
    seed: int,
) -> Trajectory | PathRejection:
    """The distilled conversation, or the rejection of the turn that failed."""
    all_tools = list(dict.fromkeys(n for t in turns for n in t.tools))
    withheld = {f for t in turns if t.kind == MISS_FUNC for f in t.functions}
    convo_tools = [specs[n].openai_tool() for n in all_tools if n in specs and n not in withheld]
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    ids: list[str] = []
    starts: list[int] = []
    for i, turn in enumerate(turns):
        if i > 0 and turns[i - 1].kind == MISS_FUNC:
            messages.append(new_tools_message([specs[f] for f in turns[i - 1].functions if f in specs]))
        messages.append({"role": "user", "content": turn.query})
        starts.append(len(messages))
        out = await assistant_turn(client, messages, turn, turn.calls or None, specs, seed + i)
        ids.extend(out.llm_call_ids)
        if not out.ok:
            return _reject(i, "teacher_failed", out.reason or "teacher failed")
        if turn.kind == CALL:
            mismatch = calls_mismatch(turn.calls, out.calls, specs)
            if mismatch:
                return _reject(i, "calls_mismatch", mismatch)
            assistant, results = tool_messages(out.calls, turn.outputs, i)
            messages.append(assistant)
            messages.extend(results)
            reply = await client.chat(
                LLMRequest(
                    messages=messages + [{"role": "system", "content": REPLY_PROMPT}],
                    response_schema=CONTENT_SCHEMA,
                    max_tokens=128,
                    seed=seed + i,
                )
            )
            ids.append(reply.call_id)
            data = reply.json()
            if not isinstance(data, dict) or not isinstance(data.get("content"), str):
                return _reject(i, "teacher_failed", "no final reply after the tool results")
            messages.append({"role": "assistant", "content": data["content"].strip()})
        else:
            if not asks_or_refuses(out.messages[0]["content"]):
                return _reject(
                    i,
                    "no_ask_or_refusal",
                    f"{turn.kind} turn neither asks nor refuses: {out.messages[0]['content'][:120]!r}",
                )
            messages.extend(out.messages)
    return Trajectory(messages, convo_tools, ids, starts)


def wrong_hint(
    turn: TurnResult, earlier: list[TurnResult], specs: dict[str, FunctionSpec], rng: random.Random
) -> tuple[str, list[ToolCall]] | None:
    """A contrastive, incorrect hint for `turn` with its error type, or None if none applies."""
    if turn.kind == MISS_PARAMS and turn.functions:
        if rng.random() < 0.5:
            return "answer_instead_of_ask", []
        spec = specs[turn.functions[0]]
        args = {p: _invent(spec.properties.get(p, {}), rng) for p in spec.required}
        return "hallucinated_missing_param", [ToolCall(spec.name, args)]
    if turn.kind == IRRELEVANT:
        offered = [specs[n] for n in turn.tools if n in specs]
        if not offered:
            return None
        other = rng.choice(offered)
        return "call_instead_of_refusing", [
            ToolCall(other.name, {p: _invent(other.properties.get(p, {}), rng) for p in other.required})
        ]
    if turn.kind == MISS_FUNC:
        return None
    if len(turn.calls) > 1:
        parallel = len({c.name for c in turn.calls}) == 1
        return ("missing_parallel_call" if parallel else "missing_nested_call"), turn.calls[:-1]
    call = turn.calls[0]
    known = {json.dumps(x) for t in earlier for o in t.outputs for x in _values(o)}
    dependent = [k for k, v in call.arguments.items() if json.dumps(v) in known]
    if dependent:
        key = rng.choice(dependent)
        return "wrong_dependency_value", [
            ToolCall(call.name, {**call.arguments, key: _perturb(call.arguments[key], rng)})
        ]
    others = [n for n in turn.tools if n != call.name and n in specs]
    if others:
        other = specs[rng.choice(others)]
        return "wrong_function", [
            ToolCall(
                other.name,
                {p: call.arguments.get(p, _invent(other.properties.get(p, {}), rng)) for p in other.required},
            )
        ]
    return None


def _values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _values(v)]
    return [value]


def _perturb(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + rng.randint(1, 9)
    return f"{value}-x"


def _invent(schema: dict[str, Any], rng: random.Random) -> Any:
    kind = str(schema.get("type"))
    if "enum" in schema:
        return rng.choice(schema["enum"])
    return {
        "integer": rng.randint(1, 99),
        "number": float(rng.randint(1, 99)),
        "boolean": True,
        "array": [],
        "object": {},
    }.get(kind, "unknown")


async def preference_pair(
    client: LLMClient,
    trajectory: Trajectory,
    turns: list[TurnResult],
    specs: dict[str, FunctionSpec],
    rng: random.Random,
    seed: int,
) -> dict[str, Any] | None:
    """One turn-level pair: shared prefix, the positive turn, the turn written under a wrong hint."""
    options = [(i, h) for i, t in enumerate(turns) if (h := wrong_hint(t, turns[:i], specs, rng))]
    if not options:
        return None
    index, (error_type, hint_calls) = rng.choice(options)
    start = trajectory.turn_starts[index]
    prefix = trajectory.messages[:start]
    answer = error_type == "answer_instead_of_ask"
    out = await assistant_turn(client, prefix, turns[index], hint_calls or None, specs, seed, answer_anyway=answer)
    if not out.ok:
        return None
    # A teacher that ignored the wrong hint wrote no negative.
    if turns[index].kind == CALL and calls_mismatch(turns[index].calls, out.calls, specs) is None:
        return None
    if answer and asks_or_refuses(out.messages[0]["content"]):
        return None
    rejected = tool_messages(out.calls, [], index)[0] if out.calls else out.messages[0]
    return {
        "turn_index": index,
        "error_type": error_type,
        "prompt": prefix,
        "chosen": [trajectory.messages[start]],
        "rejected": [rejected],
        "llm_call_id": out.llm_call_ids[-1],
    }


def contains_hint(messages: list[dict[str, Any]]) -> bool:
    return any(HINT_MARKER in (m.get("content") or "") for m in messages)


@dataclass
class DistillationOutcome:
    """`trajectories`, `preference_pairs` and `path_rejections` rows of one partition."""

    trajectory_rows: list[dict[str, Any]]
    pair_rows: list[dict[str, Any]]
    rejection_rows: list[dict[str, Any]]
    paths_in: int


async def distill_paths(
    client: LLMClient,
    turns_by_path: dict[str, list[dict[str, Any]]],
    specs: dict[str, FunctionSpec],
    tool_set: str,
    run_id: str,
    seed: int,
    negatives: bool,
    tick: Callable[[], None] | None = None,
) -> DistillationOutcome:
    """A positive trajectory per path with translated turns, and at most one preference pair each."""
    names = {s.function_id(tool_set): n for n, s in specs.items()}

    async def one(i: int, path_id: str, rows: list[dict[str, Any]]):
        turns = [TurnResult.from_row(r, names) for r in sorted(rows, key=lambda r: r["turn_index"])]
        traj = await positive_trajectory(client, turns, specs, seed=seed + i)
        pair = None
        if isinstance(traj, Trajectory) and negatives:
            pair = await preference_pair(
                client, traj, turns, specs, random.Random(f"{seed}:neg:{path_id}"), seed=seed + i
            )
        if tick:
            tick()
        return traj, pair

    ordered = sorted(turns_by_path.items())
    results = await asyncio.gather(*(one(i, p, rows) for i, (p, rows) in enumerate(ordered)))
    outcome = DistillationOutcome([], [], [], len(ordered))
    for (path_id, rows), (traj, pair) in zip(ordered, results):
        if isinstance(traj, PathRejection):
            outcome.rejection_rows.append(traj.as_row(tool_set, run_id, path_id))
            continue
        if contains_hint(traj.messages):
            raise RuntimeError(f"hint text leaked into the conversation of path {path_id}")
        trajectory_id = stable_id(tool_set, path_id, "trajectory")
        outcome.trajectory_rows.append(
            {
                "trajectory_id": trajectory_id,
                "tool_set": tool_set,
                "run_id": run_id,
                "path_id": path_id,
                "turn_ids": [r["turn_id"] for r in sorted(rows, key=lambda r: r["turn_index"])],
                "messages": traj.messages,
                "tools": traj.tools,
                "llm_call_ids": traj.llm_call_ids,
            }
        )
        if pair:
            outcome.pair_rows.append(
                {
                    "pair_id": stable_id(trajectory_id, pair["turn_index"], pair["error_type"]),
                    "tool_set": tool_set,
                    "run_id": run_id,
                    "trajectory_id": trajectory_id,
                    **pair,
                }
            )
    return outcome
