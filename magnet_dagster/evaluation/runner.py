"""Replaying the test split against the student, and scoring each turn, the way BFCL runs it.

A stored conversation is a list of user turns. A call turn's reference is one or more steps
(an assistant message with tool calls, then their results; a call that needs an earlier
call's output is in a later step), then a text reply; an ask/refuse turn's reference is one
text reply. The trajectory's `turn_meta` (one entry per user turn) says what each turn is
(`call`, `miss_params` with the parameters the assistant must ask for, `miss_func`,
`irrelevant`); rows stored without it are scored as before (a turn without reference calls
must make none and ask or refuse).

Held-out functions follow BFCL's convention (`model_handler/base_handler.py`,
`inference_multi_turn_FC`): the turn that brings them has no query of its own; the stored
user message is the functions plus BFCL's prompt (`tools.messages.holdout_message`), and the
student gets the bare prompt with the functions added to the request's `tools` from then on.

Two modes.

- Teacher-forced: every reference step is asked for with the reference history up to it
  (earlier steps and their tool results included); a turn is right when all its steps match
  the reference calls (AST, order free within a step).
- Free-running (executable tools only): the student's own calls run through the allow-list
  dispatcher and their results are fed back, step after step, until it answers without a
  call or, as BFCL's `MAXIMUM_STEP_LIMIT`, is forced to quit (BFCL then fails the whole
  conversation). A call turn is judged as BFCL's `multi_turn_checker` judges it: the student
  made a call, the tools' state equals the state the reference calls produce, and every
  result of the reference calls is among the results of the student's calls so far (a
  multiset; the checker counts earlier turns' results too). So a repeated or extra call that
  leaves state and results right passes, as BFCL accepts it. The per-call AST match is kept
  beside it as `strict_match`.

An ask on a `miss_params` turn counts only if it asks for the missing parameter
(`asks_for_parameters`); a `miss_func` / `irrelevant` turn must make no call and say so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.evaluation.scoring import (
    ASK_OR_REFUSE,
    FREE_RUNNING,
    NO_CALL_KINDS,
    TEACHER_FORCED,
    TurnVerdict,
    execution_mismatch,
    no_call_mismatch,
    result_text,
    same_state,
    score_turn,
)
from magnet_dagster.graph.paths import CALL, MISS_PARAMS
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.tools.calls import ToolCall, calls_mismatch
from magnet_dagster.tools.executors import Executor, ExecutorFactory, conversation_seed
from magnet_dagster.tools.messages import (
    announced_tools,
    split_holdout,
    tool_messages,
)
from magnet_dagster.tools.spec import FunctionSpec

#: BFCL's `MAXIMUM_STEP_LIMIT` (bfcl_eval/constants/default_prompts.py): its inference loop
#: force-quits a turn when the model is still calling after this many calling steps
MAX_STEPS_PER_TURN = 20

#: Runs one step's calls, returning one output per call.
Execute = Callable[[list[ToolCall]], Awaitable[list[Any]]]


# ------------------------------------------------------------------ the reference


@dataclass(frozen=True)
class ReferenceTurn:
    """One scored user turn of a stored conversation."""

    index: int
    user_index: int
    kind: str
    #: indexes of the reference's assistant messages with tool calls, in order
    steps: tuple[int, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def first_reply(self) -> int:
        return self.user_index + 1

    def step_calls(self, messages: list[dict[str, Any]]) -> list[list[ToolCall]]:
        return [[ToolCall.from_dict(tc["function"]) for tc in messages[i]["tool_calls"]] for i in self.steps]

    def calls(self, messages: list[dict[str, Any]]) -> list[ToolCall]:
        return [c for step in self.step_calls(messages) for c in step]


def reference_turns(messages: list[dict[str, Any]], turn_meta: list[Any] | str | None = None) -> list[ReferenceTurn]:
    """The conversation's scored turns: each user message that an assistant message answers.

    `turn_meta[k]` describes the k-th user message; without it (or past its end) a turn with
    reference calls is a call turn and one without is `ask_or_refuse`.
    """
    if isinstance(turn_meta, str):
        turn_meta = json.loads(turn_meta)
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    turns: list[ReferenceTurn] = []
    for ordinal, u in enumerate(users):
        if u + 1 >= len(messages) or messages[u + 1].get("role") != "assistant":
            continue
        end = users[ordinal + 1] if ordinal + 1 < len(users) else len(messages)
        steps = tuple(
            i for i in range(u + 1, end) if messages[i].get("role") == "assistant" and messages[i].get("tool_calls")
        )
        meta = turn_meta[ordinal] if turn_meta and ordinal < len(turn_meta) else None
        meta = meta if isinstance(meta, dict) else {}
        declared = meta.get("kind")
        kind = CALL if steps else declared if declared in NO_CALL_KINDS else ASK_OR_REFUSE
        missing = tuple(str(p) for p in meta.get("missing") or ()) if kind == MISS_PARAMS else ()
        turns.append(ReferenceTurn(len(turns), u, kind, steps, missing))
    return turns


def tools_at(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation's tools plus those held-out functions added so far (BFCL's FC form)."""
    return _with_tools(tools, announced_tools(messages))


def _with_tools(offered: list[dict[str, Any]], added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = list(offered)
    names = {t["function"]["name"] for t in out}
    for tool in added:
        if tool["function"]["name"] not in names:
            out.append(tool)
            names.add(tool["function"]["name"])
    return out


def student_view(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as the student gets them: a holdout message becomes BFCL's bare prompt
    (its functions go to the request's `tools`, see `tools_at`)."""
    return [split_holdout(m)[0] for m in messages]


def _categories(calls: list[ToolCall], specs: dict[str, FunctionSpec]) -> list[str]:
    return sorted({specs[c.name].category or "-" for c in calls if c.name in specs})


def _calls_json(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [c.as_dict() for c in calls]


def _expected(turn: ReferenceTurn, messages: list[dict[str, Any]]) -> dict[str, Any]:
    if turn.kind == CALL:
        steps = turn.step_calls(messages)
        return {"calls": [c.as_dict() for s in steps for c in s], "steps": [_calls_json(s) for s in steps]}
    out: dict[str, Any] = {"content": messages[turn.first_reply].get("content")}
    if turn.missing:
        out["missing"] = list(turn.missing)
    return out


# ------------------------------------------------------------------ teacher-forced


async def teacher_forced(
    client: LLMClient,
    trajectory: dict[str, Any],
    specs: dict[str, FunctionSpec],
    operations: list[str],
    max_tokens: int = 256,
) -> list[TurnVerdict]:
    """Every reference step asked for with the reference history up to it."""
    messages = trajectory["messages"]
    turns = reference_turns(messages, trajectory.get("turn_meta"))

    async def ask(upto: int) -> Any:
        history = messages[:upto]
        request = LLMRequest(
            messages=student_view(history),
            tools=tools_at(history, trajectory["tools"]),
            temperature=0.0,
            max_tokens=max_tokens,
        )
        return await client.chat(request)

    async def one(turn: ReferenceTurn) -> TurnVerdict:
        points = turn.steps or (turn.first_reply,)
        replies = await asyncio.gather(*(ask(i) for i in points))
        reasons: list[str | None] = []
        for i, reply in zip(points, replies):
            if not reply.ok:
                reasons.append(f"student call failed: {reply.error}")
                continue
            reasons.append(
                score_turn(messages[i], reply.tool_calls(), reply.content, specs, turn.kind, turn.missing)[2]
            )
        failed = [(n, r) for n, r in enumerate(reasons) if r is not None]
        reason = None
        if failed:
            n, r = failed[0]
            reason = f"step {n + 1}/{len(points)}: {r}" if len(points) > 1 else r
        got_steps = [reply.tool_calls() if reply.ok else [] for reply in replies]
        failing = replies[failed[0][0]] if failed else replies[-1]
        return TurnVerdict(
            trajectory_id=trajectory["trajectory_id"],
            turn_index=turn.index,
            kind=turn.kind,
            expected=_expected(turn, messages),
            got={
                "content": replies[-1].content,
                "calls": [c.as_dict() for s in got_steps for c in s],
                "steps": [_calls_json(s) for s in got_steps],
            },
            verdict=reason is None,
            reason=reason,
            llm_call_id=failing.call_id,
            mode=TEACHER_FORCED,
            operations=operations,
            categories=_categories(turn.calls(messages), specs),
            strict_match=reason is None,
            strict_reason=reason,
            call_steps=len(turn.steps),
        )

    return list(await asyncio.gather(*(one(t) for t in turns)))


# ------------------------------------------------------------------ free-running


@dataclass
class StudentStep:
    calls: list[ToolCall]
    outputs: list[Any]
    content: str
    llm_call_id: str


@dataclass
class StudentTurn:
    """What the student did in one user turn: its requests in order (the last one answers
    without a call, unless it failed or was forced to quit)."""

    steps: list[StudentStep] = field(default_factory=list)
    forced_quit: bool = False
    error: str | None = None

    @property
    def call_steps(self) -> list[StudentStep]:
        return [s for s in self.steps if s.calls]

    @property
    def calls(self) -> list[ToolCall]:
        return [c for s in self.steps for c in s.calls]

    @property
    def outputs(self) -> list[Any]:
        return [o for s in self.steps for o in s.outputs]

    @property
    def content(self) -> str:
        return self.steps[-1].content if self.steps else ""

    @property
    def llm_call_id(self) -> str | None:
        return self.steps[-1].llm_call_id if self.steps else None


async def student_turn(
    client: LLMClient,
    history: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    execute: Execute,
    max_steps: int = MAX_STEPS_PER_TURN,
    max_tokens: int = 256,
    label: str = "0",
    raw_string_results: bool = False,
) -> StudentTurn:
    """One user turn as BFCL's inference loop runs it (`inference_multi_turn_FC`): ask; if the
    reply makes calls, run them, append the calls and their results to `history`, and ask
    again; stop at a reply without a call (appended as text), or force-quit once the student
    has made calls in more than `max_steps` steps (BFCL: `count > MAXIMUM_STEP_LIMIT`).

    `raw_string_results`: string results go into the tool message as they are (BFCL's
    harness) rather than JSON-encoded (the project's exports).
    """
    turn = StudentTurn()
    while True:
        reply = await client.chat(
            LLMRequest(messages=list(history), tools=tools, temperature=0.0, max_tokens=max_tokens)
        )
        calls = reply.tool_calls() if reply.ok else []
        step = StudentStep(calls, [], reply.content, reply.call_id)
        turn.steps.append(step)
        if not reply.ok:
            turn.error = f"student call failed: {reply.error}"
            return turn
        if not calls:
            history.append({"role": "assistant", "content": reply.content})
            return turn
        step.outputs = list(await execute(calls))
        assistant, results = tool_messages(calls, step.outputs, f"{label}_{len(turn.call_steps) - 1}")
        if raw_string_results:
            for message, output in zip(results, step.outputs):
                if isinstance(output, str):
                    message["content"] = output
        history += [assistant, *results]
        if len(turn.call_steps) > max_steps:
            turn.forced_quit = True
            return turn


async def free_running(
    client: LLMClient,
    trajectory: dict[str, Any],
    specs: dict[str, FunctionSpec],
    operations: list[str],
    new_executor: Callable[[], Executor],
    max_tokens: int = 256,
    max_steps: int = MAX_STEPS_PER_TURN,
) -> list[TurnVerdict]:
    """The student's calls run and feed its own history, step by step; each call turn is judged
    like BFCL's checker (state and results), with the AST match kept as `strict_match`."""
    messages = trajectory["messages"]
    turns = reference_turns(messages, trajectory.get("turn_meta"))
    student, oracle = new_executor(), new_executor()
    history: list[dict[str, Any]] = []
    offered = list(trajectory["tools"])
    cursor = 0
    results: list[str] = []  # every result of the student's calls so far, all turns (BFCL's response checker)
    quit_at: int | None = None
    verdicts = []

    async def run(calls: list[ToolCall]) -> list[Any]:
        return [(await student.execute(c)).output for c in calls]

    try:
        for turn in turns:
            for m in messages[cursor : turn.user_index + 1]:
                if m.get("role") in ("system", "user"):
                    shown, added = split_holdout(m)
                    history.append(shown)
                    offered = _with_tools(offered, added)
            cursor = turn.user_index + 1
            reference_calls = turn.calls(messages)
            base = {
                "trajectory_id": trajectory["trajectory_id"],
                "turn_index": turn.index,
                "kind": turn.kind,
                "expected": _expected(turn, messages),
                "mode": FREE_RUNNING,
                "operations": operations,
                "categories": _categories(reference_calls, specs),
            }
            if quit_at is not None:
                reason: str | None = (
                    f"not reached: the student was forced to quit at turn {quit_at} (BFCL fails the conversation)"
                )
                verdicts.append(
                    TurnVerdict(
                        **base,
                        got=None,
                        verdict=False,
                        reason=reason,
                        llm_call_id=None,
                        strict_match=False,
                        strict_reason=reason,
                    )
                )
                continue
            done = await student_turn(client, history, offered, run, max_steps, max_tokens, str(turn.index))
            reference_results = [result_text((await oracle.execute(c)).output) for c in reference_calls]
            results += [result_text(o) for o in done.outputs]
            state_match = same_state(student, oracle)
            strict: str | None
            if turn.kind == CALL:
                reason = execution_mismatch(
                    bool(done.calls), len(reference_calls), state_match, reference_results, results
                )
                strict = calls_mismatch(reference_calls, done.calls, specs)
            else:
                reason = strict = no_call_mismatch(turn.kind, done.calls, done.content, turn.missing)
            stop = done.error or (f"forced to quit after {max_steps} steps" if done.forced_quit else None)
            if stop:
                reason = strict = stop
            if done.forced_quit:
                quit_at = turn.index
            verdicts.append(
                TurnVerdict(
                    **base,
                    got={
                        "content": done.content,
                        "calls": _calls_json(done.calls),
                        "steps": [_calls_json(s.calls) for s in done.call_steps],
                    },
                    verdict=reason is None,
                    reason=reason,
                    llm_call_id=done.llm_call_id,
                    state_match=state_match,
                    strict_match=strict is None,
                    strict_reason=strict,
                    call_steps=len(done.call_steps),
                    forced_quit=done.forced_quit,
                )
            )
    finally:
        student.close()
        oracle.close()
    return verdicts


async def evaluate(
    client: LLMClient,
    tests: list[dict[str, Any]],
    specs: dict[str, FunctionSpec],
    factory: ExecutorFactory,
    max_steps: int = MAX_STEPS_PER_TURN,
) -> list[TurnVerdict]:
    """Every test conversation teacher-forced, and free-running too when its tools really execute."""
    jobs = [teacher_forced(client, t, specs, t["operations"]) for t in tests]
    if factory.executable:
        jobs += [
            free_running(client, t, specs, t["operations"], _executors(factory, t["path_id"]), max_steps=max_steps)
            for t in tests
        ]
    return [v for conv in await asyncio.gather(*jobs) for v in conv]


def _executors(factory: ExecutorFactory, path_id: str) -> Callable[[], Executor]:
    """New executors for one conversation, each from that path's starting state."""
    seed = conversation_seed(path_id)
    return lambda: factory.new(seed)
