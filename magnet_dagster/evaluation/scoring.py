"""Scoring a student's turn the way BFCL scores it, and summarising the verdicts.

A call turn is right, free-running, when the tools' state equals the reference's and every
reference result is among the student's results (BFCL's `multi_turn_checker`: `state_checker`
and `response_checker`); the per-call AST match is kept beside it as the strict metric. A turn
whose reference makes no call must make none and ask for the missing parameter (`miss_params`)
or say it cannot (`miss_func`, `irrelevant`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.graph.paths import CALL, IRRELEVANT, MISS_FUNC, MISS_PARAMS
from magnet_dagster.tools.calls import ToolCall, calls_mismatch
from magnet_dagster.tools.executors import Executor, instance_state
from magnet_dagster.tools.messages import asks_or_refuses, mentions_parameter
from magnet_dagster.tools.spec import FunctionSpec

TEACHER_FORCED, FREE_RUNNING = "teacher_forced", "free_running"
#: a turn without reference calls in a row stored without `turn_meta`
ASK_OR_REFUSE = "ask_or_refuse"
NO_CALL_KINDS = (MISS_PARAMS, MISS_FUNC, IRRELEVANT)


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


def verdict_row(
    v: TurnVerdict, tool_set: str, run_id: str, model: str, checkpoint: str | None = None
) -> dict[str, Any]:
    """The `eval_results` row; the strict AST match and the step count ride in `got`. With a
    served `checkpoint`, its path is recorded and the row id names the model, so one run can
    score two checkpoints (before and after training) on the same turns."""
    got = dict(v.got) if isinstance(v.got, dict) else {}
    got |= {
        "strict_match": v.strict_match,
        "strict_reason": v.strict_reason,
        "call_steps": v.call_steps,
        "forced_quit": v.forced_quit,
    }
    return {
        "result_id": f"{run_id[:8]}-{v.mode}-{v.trajectory_id}-{v.turn_index}" + (f"-{model}" if checkpoint else ""),
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
        "checkpoint": checkpoint,
    }
