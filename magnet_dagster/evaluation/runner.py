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
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.graph.paths import CALL, IRRELEVANT, MISS_FUNC, MISS_PARAMS
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.tools.calls import ToolCall, calls_mismatch
from magnet_dagster.tools.executors import Executor, ExecutorFactory, conversation_seed, instance_state
from magnet_dagster.tools.messages import (
    announced_tools,
    asks_or_refuses,
    mentions_parameter,
    split_holdout,
    tool_messages,
)
from magnet_dagster.tools.spec import FunctionSpec

TEACHER_FORCED, FREE_RUNNING = "teacher_forced", "free_running"
#: a turn without reference calls in a row stored without `turn_meta`
ASK_OR_REFUSE = "ask_or_refuse"
NO_CALL_KINDS = (MISS_PARAMS, MISS_FUNC, IRRELEVANT)
#: BFCL's `MAXIMUM_STEP_LIMIT` (bfcl_eval/constants/default_prompts.py): its inference loop
#: force-quits a turn when the model is still calling after this many calling steps
MAX_STEPS_PER_TURN = 20

#: Runs one step's calls, returning one output per call.
Execute = Callable[[list[ToolCall]], Awaitable[list[Any]]]


@dataclass
class TurnVerdict:
    trajectory_id: str
    turn_index: int
    kind: str
    expected: Any
    got: Any
    verdict: bool
    reason: str | None
    llm_call_id: str | None
    mode: str = TEACHER_FORCED
    operations: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    state_match: bool | None = None
    #: the per-call AST match (every reference call of the turn matched, nothing extra)
    strict_match: bool | None = None
    strict_reason: str | None = None
    #: the student's steps that made calls (free-running) / reference steps asked for (teacher-forced)
    call_steps: int = 0
    forced_quit: bool = False


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


# ------------------------------------------------------------------ scoring rules


def no_call_mismatch(kind: str, got_calls: list[ToolCall], content: str, missing: Sequence[str] = ()) -> str | None:
    """Why a reply on a turn whose reference makes no call is wrong (None when it is right)."""
    if got_calls:
        want = (
            "a question" if kind == MISS_PARAMS else "a refusal" if kind in NO_CALL_KINDS else "a question or a refusal"
        )
        return f"expected no call ({want}), got {[c.name for c in got_calls]}"
    if kind == MISS_PARAMS and missing:
        if not asks_or_refuses(content):
            return f"expected a question for {list(missing)}"
        absent = [p for p in missing if not mentions_parameter(content, p)]
        return f"the reply does not ask for {absent}" if absent else None
    return None if asks_or_refuses(content) else "expected a question or a refusal"


def score_turn(
    reference: dict[str, Any],
    got_calls: list[ToolCall],
    content: str,
    specs: dict[str, FunctionSpec],
    kind: str | None = None,
    missing: Sequence[str] = (),
) -> tuple[str, Any, str | None]:
    """(kind, expected, reason or None when right) for one reference assistant message:
    a step with calls (AST match) or an ask/refuse reply (`no_call_mismatch`)."""
    if reference.get("tool_calls"):
        expected = [ToolCall.from_dict(tc["function"]) for tc in reference["tool_calls"]]
        return CALL, [c.as_dict() for c in expected], calls_mismatch(expected, got_calls, specs)
    kind = kind if kind in NO_CALL_KINDS else ASK_OR_REFUSE
    expected_reply = {"content": reference.get("content"), **({"missing": list(missing)} if missing else {})}
    return kind, expected_reply, no_call_mismatch(kind, got_calls, content, missing)


def result_text(output: Any) -> str:
    """A call's result as BFCL's executor renders it for its response checker: strings as
    they are, everything else as JSON."""
    if isinstance(output, str):
        return output
    try:
        return json.dumps(output)
    except (TypeError, ValueError):
        return str(output)


def missing_results(reference: Sequence[str], got: Sequence[str]) -> list[str]:
    """Reference results not found among `got`, each found one used once (BFCL's
    `_is_subsequence_unordered`)."""
    pool = list(got)
    missing = []
    for item in reference:
        try:
            pool.remove(item)
        except ValueError:
            missing.append(item)
    return missing


def execution_mismatch(
    made_call: bool, reference_calls: int, state_match: bool | None, reference_results: list[str], results: list[str]
) -> str | None:
    """BFCL's `multi_turn_checker` on one turn whose reference makes calls, in its order:
    the student made a call; the tools' state equals the reference's (`state_checker`);
    every reference result is among the student's results so far (`response_checker`)."""
    if not made_call:
        return f"no call made (the reference makes {reference_calls})"
    if state_match is False:
        return "the tools' state differs from the reference's"
    missing = missing_results(reference_results, results)
    if missing:
        return f"{len(missing)} reference result(s) not among the student's, e.g. {missing[0][:200]}"
    return None


def _live_instances(executor: Executor) -> dict[str, object] | None:
    """The objects an in-process executor runs calls on (None for simulated tools)."""
    instances = getattr(executor, "instances", None)
    if instances is None:
        instances = getattr(getattr(executor, "dispatch", None), "instances", None)
    return instances if isinstance(instances, dict) else None


def same_state(student: Executor, oracle: Executor) -> bool | None:
    """Whether the student's tools hold the reference's state, compared as BFCL's
    `state_checker` compares (`_compare_instances`: every public attribute of the reference
    instance equal, by `==`, to the student's); None when the tools keep no state here."""
    mine, truth = _live_instances(student), _live_instances(oracle)
    if mine is not None and truth is not None and mine.keys() == truth.keys():
        missing = object()
        return all(
            getattr(mine[name], attr, missing) == value
            for name, obj in truth.items()
            for attr, value in instance_state({name: obj})[name].items()
        )
    state = student.state()
    return None if state is None else state == oracle.state()


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


# ------------------------------------------------------------------ summaries and rows


def summarise(verdicts: list[TurnVerdict]) -> dict[str, Any]:
    """Per mode: turn and conversation accuracy (free-running: judged like BFCL's checker) and
    the same under the strict per-call AST match, state match, steps, with breakdowns by kind,
    operation and category."""
    out: dict[str, Any] = {}
    for mode in sorted({v.mode for v in verdicts}):
        vs = [v for v in verdicts if v.mode == mode]
        by_conv: dict[str, list[TurnVerdict]] = defaultdict(list)
        groups: dict[str, dict[str, list[TurnVerdict]]] = {
            "kind": defaultdict(list),
            "operation": defaultdict(list),
            "category": defaultdict(list),
        }
        for v in vs:
            by_conv[v.trajectory_id].append(v)
            groups["kind"][v.kind].append(v)
            for op in set(v.operations) or {"none"}:
                groups["operation"][op].append(v)
            for cat in v.categories:
                groups["category"][cat].append(v)
        states = [v.state_match for v in vs if v.state_match is not None]
        call_turns = [v for v in vs if v.kind == CALL and v.got is not None]
        out[mode] = {
            "conversations": len(by_conv),
            "turns": len(vs),
            "turn_accuracy": _rate([v.verdict for v in vs]),
            "conversation_accuracy": _rate([all(v.verdict for v in c) for c in by_conv.values()]),
            "strict_turn_accuracy": _rate([bool(v.strict_match) for v in vs]),
            "strict_conversation_accuracy": _rate([all(bool(v.strict_match) for v in c) for c in by_conv.values()]),
            "state_match": _rate(states),
            "steps_per_call_turn": round(sum(v.call_steps for v in call_turns) / len(call_turns), 2)
            if call_turns
            else None,
            "forced_quits": sum(v.forced_quit for v in vs),
            "student_errors": sum(bool(v.reason and v.reason.startswith("student call failed")) for v in vs),
            **{
                f"by_{name}": {
                    k: {
                        "turns": len(x),
                        "accuracy": _rate([v.verdict for v in x]),
                        "strict_accuracy": _rate([bool(v.strict_match) for v in x]),
                    }
                    for k, x in sorted(g.items())
                }
                for name, g in groups.items()
            },
        }
    return out


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def verdict_row(v: TurnVerdict, tool_set: str, run_id: str, model: str) -> dict[str, Any]:
    """The `eval_results` row; the strict AST match and the step count ride in `got`."""
    got = dict(v.got) if isinstance(v.got, dict) else {}
    got |= {
        "strict_match": v.strict_match,
        "strict_reason": v.strict_reason,
        "call_steps": v.call_steps,
        "forced_quit": v.forced_quit,
    }
    return {
        "result_id": f"{run_id[:8]}-{v.mode}-{v.trajectory_id}-{v.turn_index}",
        "tool_set": tool_set,
        "run_id": run_id,
        "student_model": model,
        "trajectory_id": v.trajectory_id,
        "turn_index": v.turn_index,
        "kind": v.kind,
        "expected": v.expected,
        "got": got,
        "verdict": v.verdict,
        "reason": v.reason,
        "llm_call_id": v.llm_call_id,
        "mode": v.mode,
        "operations": v.operations,
        "categories": v.categories,
        "state_match": v.state_match,
    }


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
