"""Context distillation: the teacher writes the assistant side with the reference as a hint.

A call turn is written step by step, as translation made it: each step's calls, hinted, must
match the reference (AST, order-free); its real results follow; a call that needs them comes in
the next step. Then the reply after the results, which must report them (or say a call failed),
else it is regenerated and then the path dropped (`reply`). On `miss_*` turns the teacher makes
no call and asks for the missing parameter or says it cannot. After a `miss_func` turn the
held-out function arrives in BFCL's user message. The hint lives only in the request; the
stored conversation never contains it. Negatives come from the same prefix with a wrong hint
of a named error type, or a reply written from wrong results (`wrong_summary`).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.graph.paths import CALL, IRRELEVANT, MISS_FUNC, MISS_PARAMS
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.synthesis.prompts import (
    ANSWER_HINT,
    ASK_HINT,
    CALL_HINT,
    CONTENT_SCHEMA,
    HINT_MARKER,
    REFUSE_HINT,
    REPLY_PROMPT,
    SYSTEM_PROMPT,
    WRONG_RESULTS_HINT,
    calls_schema,
)
from magnet_dagster.synthesis.results import TRAJECTORIES, Partition, PathRejection, TurnResult
from magnet_dagster.tools.calls import CallParseError, ToolCall, calls_mismatch, leaves
from magnet_dagster.tools.messages import asks_for_parameters, asks_or_refuses, holdout_message, states, tool_messages
from magnet_dagster.tools.spec import FunctionSpec, stable_id

ERROR_TYPES = (
    "wrong_function",
    "missing_nested_call",
    "missing_call",
    "missing_parallel_call",
    "wrong_dependency_value",
    "hallucinated_missing_param",
    "answer_instead_of_ask",
    "call_instead_of_refusing",
    "wrong_summary",
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
            messages=[*history, {"role": "system", "content": hint}],
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
    """The teacher's assistant message for one step, given a hint (right or wrong).

    With `hint_calls`, the step's calls; without, an ask (`miss_params`, for the turn's missing
    parameter), a refusal, or, with `answer_anyway`, the wrong hint to answer instead of asking.
    """
    offered = [specs[n] for n in result.tools if n in specs]
    tools = [s.openai_tool() for s in offered]
    ids: list[str] = []
    if hint_calls:  # a call step, or a wrong hint on a miss turn
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
        hint = ASK_HINT.format(param=", ".join(result.missing) or "a required value")
    else:
        hint = REFUSE_HINT
    data, cid = await _teacher(client, history, hint, CONTENT_SCHEMA, tools, seed, 128)
    ids.append(cid)
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, str) or not content.strip():
        return AssistantTurn([], [], ids, False, "teacher wrote no reply")
    return AssistantTurn([{"role": "assistant", "content": content.strip()}], [], ids, True)


# ------------------------------------------------------------------ the reply after the results

_FAILURE_WORDS = re.compile(r"\b(error|fail(?:ed|s)?|could not|couldn't|cannot|can't|unable|not found)\b", re.I)
_WORD = re.compile(r"[^\W\d_]{2,}")


def _failed(output: Any) -> bool:
    return isinstance(output, dict) and ("error" in output or output.get("ok") is False)


def reply_problem(content: str, outputs: list[Any]) -> str | None:
    """Why a reply after tool results does not report them, or None when it does.

    It must read as words to the user (not JSON), and either state at least one value the calls
    returned (numbers as numbers, text case-insensitively) or, when a call failed, say so.
    """
    text = content.strip()
    if text[:1] in "{[" or len(_WORD.findall(text)) < 2:
        return f"the reply is not prose for the user: {text[:80]!r}"
    if any(_failed(o) for o in outputs):
        return None if _FAILURE_WORDS.search(text) else "a call failed and the reply does not say so"
    values = [v for v in leaves(outputs) if v is not None and not isinstance(v, bool)]
    if not values:
        return None
    if any(states(v, text) for v in values):
        return None
    return f"the reply reports none of the results: {text[:80]!r}"


async def final_reply(
    client: LLMClient, history: list[dict[str, Any]], outputs: list[Any], seed: int, ids: list[str], tries: int = 2
) -> dict[str, Any] | str:
    """The assistant's reply after a turn's results, regenerated once when it does not report them."""
    problem = "no reply"
    for attempt in range(tries):
        reply = await client.chat(
            LLMRequest(
                messages=[*history, {"role": "system", "content": REPLY_PROMPT}],
                response_schema=CONTENT_SCHEMA,
                temperature=0.0 if attempt == 0 else 0.7,
                max_tokens=128,
                seed=seed + attempt,
            )
        )
        ids.append(reply.call_id)
        data = reply.json()
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, str) or not content.strip():
            problem = "no final reply after the tool results"
            continue
        problem = reply_problem(content, outputs) or ""
        if not problem:
            return {"role": "assistant", "content": content.strip()}
    return problem


# ------------------------------------------------------------------ positive trajectories


@dataclass
class Trajectory:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    llm_call_ids: list[str]
    #: per turn, the index in `messages` of each assistant step (the decision points)
    step_starts: list[list[int]] = field(default_factory=list)
    #: per turn, the index of the reply after the tool results (call turns), else None
    reply_at: list[int | None] = field(default_factory=list)
    #: per user turn: kind, the parameter to ask for, reference functions, functions added there
    turn_meta: list[dict[str, Any]] = field(default_factory=list)

    @property
    def turn_starts(self) -> list[int]:
        return [steps[0] for steps in self.step_starts]


def _reject(turn_index: int, rule: str, reason: str) -> PathRejection:
    return PathRejection(TRAJECTORIES, turn_index, rule, reason)


def _holdout(turns: list[TurnResult], i: int) -> list[str]:
    """Functions that arrive at turn `i` (held out by the `miss_func` turn before it)."""
    return list(turns[i - 1].functions) if i > 0 and turns[i - 1].kind == MISS_FUNC else []


async def positive_trajectory(
    client: LLMClient, turns: list[TurnResult], specs: dict[str, FunctionSpec], seed: int
) -> Trajectory | PathRejection:
    """The distilled conversation, or the rejection of the turn that failed."""
    withheld = {f for i in range(len(turns)) for f in _holdout(turns, i)}
    all_tools = list(dict.fromkeys(n for t in turns for n in t.tools))
    convo_tools = [specs[n].openai_tool() for n in all_tools if n in specs and n not in withheld]
    traj = Trajectory([{"role": "system", "content": SYSTEM_PROMPT}], convo_tools, [])
    messages, ids = traj.messages, traj.llm_call_ids
    for i, turn in enumerate(turns):
        holdout = _holdout(turns, i)
        messages.append(
            holdout_message([specs[f] for f in holdout if f in specs])
            if holdout
            else {"role": "user", "content": turn.query}
        )
        traj.turn_meta.append(
            {
                "kind": turn.kind,
                "missing": list(turn.missing),
                "holdout": holdout,
                "functions": [c.name for c in turn.calls] or list(turn.functions),
            }
        )
        starts: list[int] = []
        traj.step_starts.append(starts)
        if turn.kind != CALL:
            starts.append(len(messages))
            out = await assistant_turn(client, messages, turn, None, specs, seed + i)
            ids.extend(out.llm_call_ids)
            if not out.ok:
                return _reject(i, "teacher_failed", out.reason or "teacher failed")
            content = out.messages[0]["content"]
            if not (
                asks_for_parameters(content, turn.missing) if turn.kind == MISS_PARAMS else asks_or_refuses(content)
            ):
                return _reject(
                    i,
                    "no_ask_or_refusal",
                    f"{turn.kind} turn neither asks for "
                    f"{list(turn.missing) or 'anything'} nor refuses: {content[:120]!r}",
                )
            messages.extend(out.messages)
            traj.reply_at.append(None)
            continue
        for s, (calls, outputs) in enumerate(turn.steps()):
            starts.append(len(messages))
            out = await assistant_turn(client, messages, turn, calls, specs, seed + i * 31 + s)
            ids.extend(out.llm_call_ids)
            if not out.ok:
                return _reject(i, "teacher_failed", out.reason or "teacher failed")
            mismatch = calls_mismatch(calls, out.calls, specs)
            if mismatch:
                return _reject(i, "calls_mismatch", mismatch)
            assistant, results = tool_messages(out.calls, outputs, f"{i}_{s}" if s else i)
            messages.extend([assistant, *results])
        reply = await final_reply(client, messages, turn.outputs, seed + i, ids)
        if isinstance(reply, str):
            return _reject(i, "reply", reply)
        traj.reply_at.append(len(messages))
        messages.append(reply)
    return traj


# ------------------------------------------------------------------ negatives


@dataclass(frozen=True)
class Negative:
    """A wrong continuation to write at one decision point (`position` in the messages)."""

    turn_index: int
    position: int
    error_type: str
    hint_calls: tuple[ToolCall, ...] = ()


def negatives_for(
    trajectory: Trajectory, turns: list[TurnResult], specs: dict[str, FunctionSpec], rng: random.Random
) -> list[Negative]:
    """Every contrastive, incorrect continuation that applies to the trajectory, one per turn."""
    out = []
    for i, turn in enumerate(turns):
        starts = trajectory.step_starts[i]
        if turn.kind == MISS_PARAMS and turn.functions:
            spec = specs[turn.functions[0]]
            if rng.random() < 0.5:
                out.append(Negative(i, starts[0], "answer_instead_of_ask"))
            else:
                args = {p: _invent(spec.properties.get(p, {}), rng) for p in spec.required}
                out.append(Negative(i, starts[0], "hallucinated_missing_param", (ToolCall(spec.name, args),)))
        elif turn.kind == IRRELEVANT:
            offered = [specs[n] for n in turn.tools if n in specs]
            if offered:
                other = rng.choice(offered)
                args = {p: _invent(other.properties.get(p, {}), rng) for p in other.required}
                out.append(Negative(i, starts[0], "call_instead_of_refusing", (ToolCall(other.name, args),)))
        elif turn.kind == CALL:
            out.extend(_call_negatives(trajectory, turns, i, specs, rng))
    return out


def _call_negatives(
    trajectory: Trajectory, turns: list[TurnResult], i: int, specs: dict[str, FunctionSpec], rng: random.Random
) -> list[Negative]:
    turn, starts = turns[i], trajectory.step_starts[i]
    steps = turn.steps()
    reply_at = trajectory.reply_at[i]
    if len(steps) > 1:  # answering after the first results instead of making the dependent call
        return [Negative(i, starts[-1], "missing_nested_call")]
    calls = steps[0][0]
    if len(calls) > 1:
        parallel = len({c.name for c in calls}) == 1
        return [Negative(i, starts[0], "missing_parallel_call" if parallel else "missing_call", tuple(calls[:-1]))]
    call = calls[0]
    known = {json.dumps(x) for t in turns[:i] for o in t.outputs for x in leaves(o)}
    dependent = [k for k, v in call.arguments.items() if json.dumps(v) in known]
    if dependent:
        key = rng.choice(dependent)
        wrong = ToolCall(call.name, {**call.arguments, key: _perturb(call.arguments[key], rng)})
        return [Negative(i, starts[0], "wrong_dependency_value", (wrong,))]
    others = [n for n in turn.tools if n != call.name and n in specs]
    if others and rng.random() < 0.5:
        other = specs[rng.choice(others)]
        args = {p: call.arguments.get(p, _invent(other.properties.get(p, {}), rng)) for p in other.required}
        return [Negative(i, starts[0], "wrong_function", (ToolCall(other.name, args),))]
    return [Negative(i, reply_at, "wrong_summary")] if reply_at is not None else []


def _perturb(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + rng.randint(1, 9)
    if isinstance(value, dict):
        return {k: _perturb(v, rng) for k, v in value.items()}
    if isinstance(value, list):
        return [_perturb(v, rng) for v in value]
    return f"{value}-x" if isinstance(value, str) else value


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


async def _write_negative(
    client: LLMClient,
    prefix: list[dict[str, Any]],
    turn: TurnResult,
    negative: Negative,
    specs: dict[str, FunctionSpec],
    rng: random.Random,
    seed: int,
) -> tuple[dict[str, Any], str] | None:
    """(the rejected assistant message, its LLM call) written at the decision point, or None when
    the teacher wrote nothing wrong (it ignored the wrong hint)."""
    if negative.error_type == "wrong_summary":
        wrong = [_perturb(o, rng) for o in turn.outputs]
        data, cid = await _teacher(
            client, prefix, WRONG_RESULTS_HINT.format(results=json.dumps(wrong)[:600]), CONTENT_SCHEMA, [], seed, 128
        )
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, str) or not content.strip() or reply_problem(content, turn.outputs) is None:
            return None
        return {"role": "assistant", "content": content.strip()}, cid
    if negative.error_type == "missing_nested_call":
        ids: list[str] = []
        reply = await final_reply(client, prefix, [], seed, ids, tries=1)
        return (reply, ids[-1]) if isinstance(reply, dict) else None
    answer = negative.error_type == "answer_instead_of_ask"
    out = await assistant_turn(
        client, prefix, turn, list(negative.hint_calls) or None, specs, seed, answer_anyway=answer
    )
    if not out.ok:
        return None
    if turn.kind == CALL:
        step_calls = next(c for c, _ in turn.steps())
        if calls_mismatch(step_calls, out.calls, specs) is None:
            return None
    if answer and asks_or_refuses(out.messages[0]["content"]):
        return None
    rejected = tool_messages(out.calls, [], negative.turn_index)[0] if out.calls else out.messages[0]
    return rejected, out.llm_call_ids[-1]


async def preference_pair(
    client: LLMClient,
    trajectory: Trajectory,
    turns: list[TurnResult],
    specs: dict[str, FunctionSpec],
    rng: random.Random,
    seed: int,
) -> dict[str, Any] | None:
    """One turn-level pair: shared prefix, the positive continuation, one written wrongly."""
    options = negatives_for(trajectory, turns, specs, rng)
    if not options:
        return None
    negative = rng.choice(options)
    written = await _write_negative(
        client, trajectory.messages[: negative.position], turns[negative.turn_index], negative, specs, rng, seed
    )
    if written is None:
        return None
    rejected, call_id = written
    return {
        "turn_index": negative.turn_index,
        "error_type": negative.error_type,
        "prompt": trajectory.messages[: negative.position],
        "chosen": [trajectory.messages[negative.position]],
        "rejected": [rejected],
        "llm_call_id": call_id,
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
    partition: Partition,
    tick: Callable[[], None] | None = None,
) -> DistillationOutcome:
    """A positive trajectory per path with translated turns, and at most one preference pair each."""
    specs, tool_set, run_id = partition.specs, partition.tool_set, partition.run_id
    seed, negatives = partition.options.seed, partition.options.negatives
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
                "turn_meta": traj.turn_meta,
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
