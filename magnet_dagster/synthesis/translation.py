"""Back-and-forth translation: signatures -> user query -> reference calls, turn by turn.

Back-translation writes the user's query from the turn's function signatures (with the
conversation so far and earlier outputs); forward translation turns the query back into
calls, which are validated, executed and checked for grounding. A turn that fails is
regenerated a bounded number of times; then the path is dropped with its reason.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from magnet_dagster.graph.judge import describe
from magnet_dagster.graph.paths import CALL, IRRELEVANT, MISS_FUNC, MISS_PARAMS, SignaturePath, Turn, distractor_count
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.synthesis.results import QUERIES, PathRejection, TurnResult
from magnet_dagster.tools.calls import ToolCall, calls_mismatch
from magnet_dagster.tools.executors import Executor, ExecutorFactory, conversation_seed
from magnet_dagster.tools.spec import FunctionSpec

BACK_PROMPT = """Turn each task into a user's request to an assistant that states every value.
Never name functions; refer to earlier results indirectly ("that ticket", "the result").
Task: Multiply two numbers. Values: a=6, b=9
Request: {{"query": "Multiply 6 and 9 for me."}}
Task: Look up a user by name, then send them a message. Values: name="Ana", text="See you at 5"
Request: {{"query": "Find the user named Ana and send her 'See you at 5'."}}
{context}Task: {task} Values: {values}
Request:"""

MISS_PARAMS_PROMPT = """Write the next message a user sends to an AI assistant. The user wants
this function's job done but forgets to give the value of `{param}`:
{function}
Conversation so far:
{history}
Rules: do not name the function; one sentence; do not mention {param} or its value.
Answer with JSON {{"query": "..."}}."""

MISS_FUNC_PROMPT = """Write the next message a user sends to an AI assistant, asking for this
job to be done (the assistant will turn out not to have the tool for it):
{function}
Conversation so far:
{history}
Rules: do not name the function; one sentence. Answer with JSON {{"query": "..."}}."""

FORWARD_PROMPT = """You translate a user's request into function calls.
Functions to use:
{functions}
Conversation so far:
{history}
Results already available:
{outputs}
Request: {query}
Give the calls that fulfil the request, with argument values taken from the request or from
the earlier results. Answer with JSON {{"calls": [{{"name": ..., "arguments": {{...}}}}]}}."""

QUERY_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 8, "maxLength": 400}},
    "required": ["query"],
}


def calls_schema(specs: list[FunctionSpec], exact: int | None = None) -> dict[str, Any]:
    """Structured output for calls: each item one of the offered functions, with its parameters."""
    variants = [
        {
            "type": "object",
            "properties": {"name": {"type": "string", "enum": [s.name]}, "arguments": s.parameters},
            "required": ["name", "arguments"],
        }
        for s in specs
    ]
    array: dict[str, Any] = {"type": "array", "items": variants[0] if len(variants) == 1 else {"anyOf": variants}}
    if exact is not None:
        array.update(minItems=exact, maxItems=exact)
    return {"type": "object", "properties": {"calls": array}, "required": ["calls"]}


# ------------------------------------------------------------------ checks

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _leaves(v)]
    return [value]


def _grounded(value: Any, text: str, numbers: set[float], known: list[Any]) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int | float):
        return float(value) in numbers or any(
            isinstance(k, int | float) and not isinstance(k, bool) and float(k) == float(value) for k in known
        )
    if isinstance(value, str):
        v = " ".join(value.lower().split())
        return not v or v in text or any(isinstance(k, str) and k.lower() == value.lower() for k in known)
    return all(_grounded(x, text, numbers, known) for x in _leaves(value))


def ungrounded(call: ToolCall, texts: list[str], outputs: list[Any]) -> list[str]:
    """Arguments whose value is neither literal in the user's words nor an earlier output."""
    text = " ".join(" ".join(t.lower().split()) for t in texts)
    numbers = {float(n) for n in _NUMBER.findall(text)}
    known = [x for o in outputs for x in _leaves(o)]
    return [k for k, v in call.arguments.items() if not _grounded(v, text, numbers, known)]


def schema_problem(call: ToolCall, spec: FunctionSpec | None) -> str | None:
    if spec is None:
        return f"{call.name} is not offered at this turn"
    try:
        jsonschema.validate(call.arguments, spec.parameters)
    except jsonschema.ValidationError as exc:
        return f"{call.name}: {exc.message}"
    return None


# --------------------------------------------------------------- path synthesis


def _reject(turn_index: int, rule: str, reason: str) -> PathRejection:
    return PathRejection(QUERIES, turn_index, rule, reason)


@dataclass
class TranslationSettings:
    max_attempts: int = 3
    temperature: float = 0.7
    seed: int = 0
    round_trip: bool = False


_WORDS = ["alpha", "budget", "coffee", "delta", "garden", "harbor", "invoice", "laptop", "meeting", "printer"]


def suggest_values(specs: list[FunctionSpec], earlier_outputs: list[Any], rng: random.Random) -> dict[str, Any]:
    """Concrete values for the turn's required parameters, for back-translation to state.

    Parameters an earlier output can fill (same key, or `*_id` and an `id`) are left to
    the conversation, so dependencies stay indirect. The grounding check later holds the
    forward calls to whatever the query actually says, so a suggestion the teacher drops
    costs the turn, never the check.
    """
    keys = {k for o in earlier_outputs if isinstance(o, dict) for k in o}
    values: dict[str, Any] = {}
    for spec in specs:
        for name in spec.required:
            schema = spec.properties.get(name, {})
            if name in keys or (name.endswith("_id") and "id" in keys):
                continue
            if "enum" in schema:
                values[name] = rng.choice(schema["enum"])
            elif schema.get("type") == "integer":
                values[name] = rng.randint(int(schema.get("minimum", 1)), int(schema.get("maximum", 20)))
            elif schema.get("type") == "number":
                values[name] = round(rng.uniform(1, 100), rng.choice([0, 1, 2]))
            elif schema.get("type") == "array" and (schema.get("items") or {}).get("type") in ("number", "integer"):
                values[name] = [rng.randint(1, 50) for _ in range(rng.randint(2, 4))]
            elif schema.get("type") == "boolean":
                values[name] = rng.choice([True, False])
            elif schema.get("type") == "string":
                values[name] = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}".capitalize()
    return values


def task_text(spec: FunctionSpec) -> str:
    """The part of a description that says what the function does (BFCL prefixes its API blurb)."""
    text = spec.description.split("Tool description:", 1)[-1].strip()
    return text.rstrip(".") + "." if text else spec.name.replace("_", " ") + "."


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "(from earlier results)"


def _task_and_values(
    turn: Turn, specs: dict[str, FunctionSpec], earlier_outputs: list[Any], rng: random.Random
) -> tuple[str, str]:
    """The task and values back-translation states; a parallel turn gets one value set per call."""
    if len(set(turn.functions)) == len(turn.functions):
        values = suggest_values([specs[f] for f in turn.functions], earlier_outputs, rng)
        return ", then ".join(task_text(specs[f]) for f in turn.functions), _values_text(values)
    sets = [suggest_values([specs[f]], earlier_outputs, rng) for f in turn.functions]
    task = f"{task_text(specs[turn.functions[0]])} Do it {len(sets)} times, once for each set of values."
    return task, "; ".join(f"({n}) {_values_text(v)}" for n, v in enumerate(sets, start=1))


def _context_text(done: list[TurnResult]) -> str:
    if not done:
        return ""
    return f"Conversation so far:\n{_history_text(done)}\nResults so far:\n{_outputs_text(done)}\n"


def _history_text(results: list[TurnResult]) -> str:
    return "\n".join(f"user: {r.query}" for r in results) or "(none)"


def _outputs_text(results: list[TurnResult]) -> str:
    outs = [json.dumps(o)[:300] for r in results for o in r.outputs]
    return "\n".join(outs[-6:]) or "(none)"


def offered_tools(path: SignaturePath, turn_index: int, distractors: list[str]) -> list[str]:
    """Functions the assistant sees at a turn: the path's plus distractors, minus withheld ones."""
    names = list(dict.fromkeys(path.functions + distractors))
    turn = path.turns[turn_index]
    if turn.kind in (MISS_FUNC, IRRELEVANT):
        names = [n for n in names if n not in turn.target]
    return names


async def _ask_query(
    client: LLMClient, prompt: str, settings: TranslationSettings, attempt: int, ids: list[str]
) -> str | None:
    reply = await client.chat(
        LLMRequest(
            messages=[{"role": "user", "content": prompt}],
            response_schema=QUERY_SCHEMA,
            temperature=settings.temperature,
            max_tokens=160,
            seed=settings.seed * 100 + attempt,
        )
    )
    ids.append(reply.call_id)
    data = reply.json()
    if not reply.ok or not isinstance(data, dict) or not isinstance(data.get("query"), str):
        return None
    return " ".join(data["query"].split())


async def translate_turn(
    client: LLMClient,
    path: SignaturePath,
    index: int,
    specs: dict[str, FunctionSpec],
    done: list[TurnResult],
    executor: Executor,
    tools: list[str],
    settings: TranslationSettings,
) -> TurnResult | PathRejection:
    turn: Turn = path.turns[index]
    earlier_queries = {r.query.lower() for r in done}
    last_reason = _reject(index, "no_attempt", "no attempt made")
    for attempt in range(settings.max_attempts):
        ids: list[str] = []
        if turn.kind == MISS_PARAMS:
            spec = specs[turn.target[0]]
            prompt = MISS_PARAMS_PROMPT.format(
                param=spec.required[0], function=describe(spec), history=_history_text(done)
            )
        elif turn.kind in (MISS_FUNC, IRRELEVANT):
            prompt = MISS_FUNC_PROMPT.format(function=describe(specs[turn.target[0]]), history=_history_text(done))
        else:
            rng = random.Random(f"{settings.seed}:{index}:{attempt}")
            task, values = _task_and_values(turn, specs, [o for r in done for o in r.outputs], rng)
            prompt = BACK_PROMPT.format(context=_context_text(done), task=task, values=values)
        query = await _ask_query(client, prompt, settings, attempt, ids)
        if query is None:
            last_reason = _reject(index, "back_translation_failed", "no query in the teacher's reply")
            continue
        if query.lower() in earlier_queries:
            last_reason = _reject(index, "repeated_query", f"query repeats an earlier one: {query!r}")
            continue
        if turn.kind != CALL:
            return TurnResult(index, turn.kind, turn.target, query, tools=tools, attempts=attempt + 1, llm_call_ids=ids)
        result = await _forward(client, query, turn, index, specs, done, executor, tools, settings, attempt, ids)
        if isinstance(result, TurnResult):
            result.attempts = attempt + 1
            return result
        last_reason = result
    return last_reason


async def _forward(
    client: LLMClient,
    query: str,
    turn: Turn,
    index: int,
    specs: dict[str, FunctionSpec],
    done: list[TurnResult],
    executor: Executor,
    tools: list[str],
    settings: TranslationSettings,
    attempt: int,
    ids: list[str],
) -> TurnResult | PathRejection:
    # Forward translation sees the turn's signatures, as in the paper; the check below still
    # refuses calls that use them wrongly (one twice, another left out).
    offered = [specs[n] for n in dict.fromkeys(turn.functions)]
    calls = await _translate_forward(
        client, query, offered, done, len(turn.functions), True, settings.seed * 100 + attempt, ids
    )
    if isinstance(calls, str):
        return _reject(index, "forward_translation_failed", calls)
    if sorted(c.name for c in calls) != sorted(turn.functions):
        return _reject(
            index,
            "wrong_functions",
            f"calls {[c.name for c in calls]} do not use the turn's functions {list(turn.functions)}",
        )
    for call in calls:
        problem = schema_problem(call, specs.get(call.name))
        if problem:
            return _reject(index, "schema", problem)
    texts = [r.query for r in done] + [query]
    earlier_outputs = [o for r in done for o in r.outputs]
    outputs: list[Any] = []
    simulated = False
    nested_targets = {t for _, t in turn.nested}
    for call in calls:
        visible = earlier_outputs + (outputs if call.name in nested_targets else [])
        missing = ungrounded(call, texts, visible)
        if missing:
            return _reject(index, "ungrounded", f"{call.name}: {missing} not in the query or an earlier output")
        execution = await executor.execute(call)
        if not execution.ok:
            return _reject(index, "execution", json.dumps(execution.output)[:300])
        simulated = simulated or execution.simulated
        if execution.llm_call_id:
            ids.append(execution.llm_call_id)
        outputs.append(execution.output)
    if settings.round_trip:
        problem = await _round_trip(client, query, calls, specs, done, tools, settings.seed * 100 + attempt, ids)
        if problem:
            return _reject(index, "round_trip", problem)
    return TurnResult(index, CALL, turn.functions, query, calls, outputs, tools, llm_call_ids=ids, simulated=simulated)


async def _translate_forward(
    client: LLMClient,
    query: str,
    offered: list[FunctionSpec],
    done: list[TurnResult],
    count: int,
    exact: bool,
    seed: int,
    ids: list[str],
) -> list[ToolCall] | str:
    """Query -> calls among `offered` (`count` of them when `exact`), or why there are none."""
    reply = await client.chat(
        LLMRequest(
            messages=[
                {
                    "role": "user",
                    "content": FORWARD_PROMPT.format(
                        functions="\n".join(describe(s) for s in offered),
                        history=_history_text(done),
                        outputs=_outputs_text(done),
                        query=query,
                    ),
                }
            ],
            response_schema=calls_schema(offered, exact=count if exact else None),
            temperature=0.0,
            max_tokens=96 * count + 64,
            seed=seed,
        )
    )
    ids.append(reply.call_id)
    data = reply.json()
    raw_calls = data.get("calls") if isinstance(data, dict) else None
    if not reply.ok or not isinstance(raw_calls, list):
        return reply.error or "no calls in the teacher's reply"
    try:
        return [ToolCall.from_dict(c) for c in raw_calls]
    except (ValueError, TypeError, AttributeError) as exc:
        return str(exc)


async def _round_trip(
    client: LLMClient,
    query: str,
    calls: list[ToolCall],
    specs: dict[str, FunctionSpec],
    done: list[TurnResult],
    tools: list[str],
    seed: int,
    ids: list[str],
) -> str | None:
    """An independent forward translation, offered every tool of the turn, must give the same calls."""
    offered = [specs[n] for n in tools if n in specs]
    again = await _translate_forward(client, query, offered, done, len(calls), False, seed, ids)
    mismatch = calls_mismatch(calls, [] if isinstance(again, str) else again, specs)
    return f"the query translates back to other calls: {mismatch}" if mismatch else None


async def translate_path(
    client: LLMClient,
    path: SignaturePath,
    specs: dict[str, FunctionSpec],
    executor: Executor,
    distractors: list[str],
    settings: TranslationSettings,
) -> list[TurnResult] | PathRejection:
    done: list[TurnResult] = []
    for index in range(len(path.turns)):
        tools = offered_tools(path, index, distractors)
        result = await translate_turn(client, path, index, specs, done, executor, tools, settings)
        if isinstance(result, PathRejection):
            return result
        done.append(result)
    return done


@dataclass
class TranslationOutcome:
    """`turns` rows of the kept paths and `path_rejections` rows of the dropped ones."""

    turn_rows: list[dict[str, Any]]
    rejection_rows: list[dict[str, Any]]
    paths_in: int


def distractors_for(
    path: SignaturePath, path_id: str, specs: dict[str, FunctionSpec], options: SynthesisOptions
) -> list[str]:
    """Seeded extra tools offered beside the path's own, never one the path withholds."""
    rng = random.Random(f"{options.seed}:distractors:{path_id}")
    others = sorted(set(specs) - set(path.functions) - {f for t in path.turns for f in t.target})
    return rng.sample(others, min(distractor_count(path.shape, options.distractor_tools), len(others)))


async def translate_paths(
    client: LLMClient,
    path_rows: list[dict[str, Any]],
    specs: dict[str, FunctionSpec],
    factory: ExecutorFactory,
    options: SynthesisOptions,
    tool_set: str,
    run_id: str,
    tick: Callable[[], None] | None = None,
) -> TranslationOutcome:
    """Translate every stored path, each on a fresh executor with its own starting state."""
    function_ids = {n: s.function_id(tool_set) for n, s in specs.items()}

    async def one(i: int, row: dict[str, Any]) -> list[TurnResult] | PathRejection:
        path = SignaturePath.from_row(row)
        executor = factory.new(seed=conversation_seed(row["path_id"]))
        try:
            settings = TranslationSettings(options.max_attempts, seed=options.seed + i, round_trip=options.round_trip)
            return await translate_path(
                client, path, specs, executor, distractors_for(path, row["path_id"], specs, options), settings
            )
        finally:
            executor.close()
            if tick:
                tick()

    results = await asyncio.gather(*(one(i, r) for i, r in enumerate(path_rows)))
    turns, rejections = [], []
    for row, result in zip(path_rows, results):
        if isinstance(result, PathRejection):
            rejections.append(result.as_row(tool_set, run_id, row["path_id"]))
        else:
            turns += [t.as_row(tool_set, run_id, row["path_id"], function_ids) for t in result]
    return TranslationOutcome(turns, rejections, len(path_rows))
