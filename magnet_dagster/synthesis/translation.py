"""Back-and-forth translation: signatures -> user query -> reference calls, turn by turn.

Back-translation writes the user's query from the turn's function signatures (with the
conversation so far, earlier outputs and values the teacher proposes); forward translation
turns the query back into calls, step by step: a call that needs an earlier call's output is
translated after that call has run, with the output in view (`dependencies`). Calls are
validated, checked to take mapped arguments from the real outputs, grounded and executed.
A turn that fails is regenerated a bounded number of times; then the path is dropped with its
reason. Split turns follow BFCL: a `miss_params` query leaves one value out and the next user
turn gives just that value; after a `miss_func` turn the held-out function arrives with BFCL's
own user message and the earlier request is served.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema

from magnet_dagster.graph.judge import describe
from magnet_dagster.graph.paths import CALL, IRRELEVANT, MISS_FUNC, MISS_PARAMS, SignaturePath, Turn, distractor_count
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.synthesis.dependencies import (
    Dependency,
    Mappings,
    call_steps,
    dependencies,
    dependency_problem,
    leaked_values,
    output_value,
)
from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.synthesis.prompts import (
    BACK_PROMPT,
    FORWARD_PROMPT,
    MISS_FUNC_PROMPT,
    MISS_PARAMS_PROMPT,
    QUERY_SCHEMA,
    VALUE_PROMPT,
    VALUE_REPLY_SCHEMA,
    calls_schema,
)
from magnet_dagster.synthesis.results import QUERIES, Partition, PathRejection, TurnResult
from magnet_dagster.synthesis.values import suggest_values
from magnet_dagster.tools.calls import ToolCall, calls_mismatch, leaves
from magnet_dagster.tools.executors import Executor, ExecutorFactory, conversation_seed
from magnet_dagster.tools.messages import ADDITIONAL_FUNCTIONS_PROMPT, states
from magnet_dagster.tools.spec import FunctionSpec

# ------------------------------------------------------------------ checks

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


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
    return all(_grounded(x, text, numbers, known) for x in leaves(value))


def ungrounded(call: ToolCall, texts: list[str], outputs: list[Any]) -> list[str]:
    """Arguments whose value is neither literal in the user's words nor an earlier output."""
    text = " ".join(" ".join(t.lower().split()) for t in texts)
    numbers = {float(n) for n in _NUMBER.findall(text)}
    known = [x for o in outputs for x in leaves(o)]
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


@dataclass(frozen=True)
class PathContext:
    """What every turn of one path is translated against."""

    client: LLMClient
    path: SignaturePath
    specs: dict[str, FunctionSpec]
    mappings: Mappings
    executor: Executor
    distractors: list[str]
    settings: TranslationSettings


def task_text(spec: FunctionSpec) -> str:
    """The part of a description that says what the function does (BFCL prefixes its API blurb)."""
    text = spec.description.split("Tool description:", 1)[-1].strip()
    return text.rstrip(".") + "." if text else spec.name.replace("_", " ") + "."


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "(from earlier results)"


def _context_text(done: list[TurnResult]) -> str:
    if not done:
        return ""
    return f"Conversation so far:\n{_history_text(done)}\nResults so far:\n{_outputs_text(done, [])}\n"


def _history_text(results: list[TurnResult]) -> str:
    return "\n".join(f"user: {r.query}" for r in results) or "(none)"


def _outputs_text(results: list[TurnResult], current: list[Any]) -> str:
    outs = [json.dumps(o)[:300] for r in results for o in r.outputs] + [json.dumps(o)[:300] for o in current]
    return "\n".join(outs[-6:]) or "(none)"


_IDENTIFIER = re.compile(r"(?<![\w.])[\w.]+")


def _identifiers(text: str) -> set[str]:
    """Every lower-cased run of word characters and dots in `text` (not preceded by one), and each
    of its prefixes that ends before a dot: the strings a name can match as a whole identifier."""
    found = set()
    for token in _IDENTIFIER.findall(text.lower()):
        found.add(token)
        found.update(token[:i] for i, ch in enumerate(token) if ch == ".")
    return found


def identifier_names(text: str, names: Iterable[str]) -> list[str]:
    """Function names the text uses as identifiers. A one-word name (`add`) is an ordinary word
    in a request, so only names with `_`, `.` or inner capitals count.

    One scan of the text and a set lookup per name (not a regex per name): a catalog of
    thousands of functions stays linear.
    """
    present = _identifiers(text)
    return [
        name
        for name in names
        if ("_" in name or "." in name or name[1:] != name[1:].lower()) and name.lower() in present
    ]


def held_out(path: SignaturePath) -> dict[str, int]:
    """Functions a `miss_func` turn withholds -> the index of the turn they arrive at (BFCL)."""
    return {f: i + 1 for i, t in enumerate(path.turns) if t.kind == MISS_FUNC for f in t.target}


def offered_tools(path: SignaturePath, turn_index: int, distractors: list[str]) -> list[str]:
    """Functions the assistant sees at a turn: the path's plus distractors, minus a function held
    out until a later turn (BFCL's miss_func) and the function an irrelevance turn asks for."""
    arrives = held_out(path)
    names = [n for n in dict.fromkeys(path.functions + distractors) if arrives.get(n, 0) <= turn_index]
    turn = path.turns[turn_index]
    return [n for n in names if n not in turn.target] if turn.kind == IRRELEVANT else names


def _carried(deps: list[Dependency], latest: dict[str, Any]) -> str:
    """`parameter=value` for the mapped arguments whose source has run (the step's real inputs)."""
    pairs = []
    for dep in deps:
        found, value = output_value(latest[dep.source], dep.field) if dep.source in latest else (False, None)
        if found:
            pairs.append(f"{dep.parameter}={json.dumps(value)[:120]}")
    return ", ".join(dict.fromkeys(pairs))


def _latest_outputs(done: list[TurnResult]) -> dict[str, Any]:
    return {c.name: o for r in done for c, o in zip(r.calls, r.outputs)}


def _called(done: list[TurnResult]) -> list[str]:
    return [c.name for r in done for c in r.calls]


async def _ask(ctx: PathContext, prompt: str, schema: dict[str, Any], seed: int, ids: list[str]) -> str | None:
    reply = await ctx.client.chat(
        LLMRequest(
            messages=[{"role": "user", "content": prompt}],
            response_schema=schema,
            temperature=ctx.settings.temperature,
            max_tokens=160,
            seed=seed,
        )
    )
    ids.append(reply.call_id)
    data = reply.json()
    if not reply.ok or not isinstance(data, dict) or not isinstance(data.get("query"), str):
        return None
    return " ".join(data["query"].split())


async def _values(
    ctx: PathContext, function: str, before: list[str], slot: int, ids: list[str]
) -> dict[str, Any] | str:
    """Proposed values for `function`'s required parameters that no call in `before` supplies.

    `slot` tells the calls of a path apart (turn and position); the seed does not change with
    the attempt, so a regenerated turn reuses its values from the cache and pays only for the
    query and the calls again.
    """
    mapped = {d.parameter for d in dependencies(function, before, ctx.mappings)}
    names = [p for p in ctx.specs[function].required if p not in mapped]
    seed = ctx.settings.seed * 1000 + slot
    return await suggest_values(ctx.client, ctx.specs[function], names, seed, ctx.settings.temperature, ids)


async def translate_turn(ctx: PathContext, index: int, done: list[TurnResult]) -> TurnResult | PathRejection:
    """One turn, regenerated up to `max_attempts` times; the last failure's reason otherwise."""
    last = _reject(index, "no_attempt", "no attempt made")
    earlier = {r.query.lower() for r in done}
    for attempt in range(ctx.settings.max_attempts):
        ids: list[str] = []
        result = await _attempt(ctx, index, done, ctx.settings.seed * 100 + attempt, ids)
        if isinstance(result, TurnResult) and result.query.lower() in earlier:
            result = _reject(index, "repeated_query", f"query repeats an earlier one: {result.query!r}")
        if isinstance(result, TurnResult):
            result.attempts = attempt + 1
            return result
        last = result
    return last


async def _attempt(
    ctx: PathContext, index: int, done: list[TurnResult], seed: int, ids: list[str]
) -> TurnResult | PathRejection:
    turn = ctx.path.turns[index]
    tools = offered_tools(ctx.path, index, ctx.distractors)
    previous = ctx.path.turns[index - 1] if index else None
    if turn.kind != CALL:
        return await _split_turn(ctx, index, turn, done, tools, seed, ids)
    if previous is not None and previous.kind == MISS_FUNC:
        # BFCL: the held-out function arrives with the harness's message; the earlier request stands.
        return await _forward(ctx, index, ADDITIONAL_FUNCTIONS_PROMPT, done[-1].query, done, tools, seed, ids)
    if previous is not None and previous.kind == MISS_PARAMS:
        return await _value_turn(ctx, index, done, tools, seed, ids)
    query = await _back_translate(ctx, index, turn, done, seed, ids)
    if isinstance(query, PathRejection):
        return query
    return await _forward(ctx, index, query, query, done, tools, seed, ids)


async def _back_translate(
    ctx: PathContext, index: int, turn: Turn, done: list[TurnResult], seed: int, ids: list[str]
) -> str | PathRejection:
    """The user's request for a call turn. An Insert-short turn asks only for the outer task: the
    inner call (the source of a nested pair) is for the assistant to infer from the outer's needs."""
    called = _called(done)
    value_sets = []
    for j, f in enumerate(turn.functions):
        values = await _values(ctx, f, called + list(turn.functions[:j]), index * 10 + j, ids)
        if isinstance(values, str):
            return _reject(index, "values_failed", values)
        value_sets.append(values)
    inner = {source for source, _ in turn.nested}
    if len(set(turn.functions)) == len(turn.functions):
        task = ", then ".join(task_text(ctx.specs[f]) for f in turn.functions if f not in inner)
        values_text = _values_text({k: v for vs in value_sets for k, v in vs.items()})
    else:  # parallel: one function, one value set per call
        task = f"{task_text(ctx.specs[turn.functions[0]])} Do it {len(value_sets)} times, once for each set of values."
        values_text = "; ".join(f"({n}) {_values_text(v)}" for n, v in enumerate(value_sets, start=1))
    query = await _ask(
        ctx, BACK_PROMPT.format(context=_context_text(done), task=task, values=values_text), QUERY_SCHEMA, seed, ids
    )
    if query is None:
        return _reject(index, "back_translation_failed", "no query in the teacher's reply")
    latest = _latest_outputs(done)
    for f in turn.functions:
        leaked = leaked_values(query, dependencies(f, called, ctx.mappings), latest)
        if leaked:
            return _reject(index, "dependency", f"the query states {f}'s {leaked}, which come from earlier results")
    return query


async def _split_turn(
    ctx: PathContext, index: int, turn: Turn, done: list[TurnResult], tools: list[str], seed: int, ids: list[str]
) -> TurnResult | PathRejection:
    """A `miss_params`, `miss_func` or irrelevance turn: a request the assistant must answer by
    asking for the missing value or saying it cannot (no calls)."""
    target = ctx.specs[turn.target[0]]
    values = await _values(ctx, target.name, _called(done), index * 10, ids)
    if isinstance(values, str):
        return _reject(index, "values_failed", values)
    pending: dict[str, Any] = {}
    if turn.kind == MISS_PARAMS:
        missing = turn.missing or tuple(p for p in target.required if p in values)[:1]
        if not missing:
            return _reject(index, "miss_params", f"{target.name}: no required value to leave out")
        pending = {p: values.pop(p) for p in missing if p in values}
        prompt = MISS_PARAMS_PROMPT.format(
            param=missing[0], values=_values_text(values), function=describe(target), history=_history_text(done)
        )
    else:
        missing = ()
        prompt = MISS_FUNC_PROMPT.format(
            values=_values_text(values), function=describe(target), history=_history_text(done)
        )
    query = await _ask(ctx, prompt, QUERY_SCHEMA, seed, ids)
    if query is None:
        return _reject(index, "back_translation_failed", "no query in the teacher's reply")
    named = identifier_names(query, ctx.specs)
    if named:
        return _reject(index, "names_function", f"the query names {named}")
    stated = [p for p, v in pending.items() if states(v, query)]
    if stated:
        return _reject(index, "states_missing_value", f"the query gives the value of {stated} it must leave out")
    return TurnResult(
        index, turn.kind, turn.target, query, tools=tools, llm_call_ids=ids, missing=tuple(missing), pending=pending
    )


async def _value_turn(
    ctx: PathContext, index: int, done: list[TurnResult], tools: list[str], seed: int, ids: list[str]
) -> TurnResult | PathRejection:
    """After a `miss_params` turn the user gives just the missing value (BFCL's miss_param)."""
    asked = done[-1]
    param, value = next(iter(asked.pending.items()), (None, None))
    if param is None:
        return _reject(index, "miss_params", "the earlier turn left no value out")
    spec = ctx.specs[asked.functions[0]]
    description = str(spec.properties.get(param, {}).get("description", ""))[:160] or "no description"
    reply = await _ask(
        ctx,
        VALUE_PROMPT.format(param=param, description=description, value=json.dumps(value)),
        VALUE_REPLY_SCHEMA,
        seed,
        ids,
    )
    if reply is None:
        return _reject(index, "back_translation_failed", "no reply giving the value")
    if not states(value, reply) or identifier_names(reply, ctx.specs):
        return _reject(index, "value_turn", f"the reply must give just {param}={json.dumps(value)}: {reply!r}")
    return await _forward(ctx, index, reply, f"{asked.query} {reply}", done, tools, seed, ids)


async def _forward(
    ctx: PathContext,
    index: int,
    query: str,
    request: str,
    done: list[TurnResult],
    tools: list[str],
    seed: int,
    ids: list[str],
) -> TurnResult | PathRejection:
    """Calls for `request`, one step at a time: each step is translated with the outputs of the
    steps before it in view, then validated, checked against its mapped sources, grounded, run."""
    turn = ctx.path.turns[index]
    texts = [r.query for r in done] + [request]
    earlier_outputs = [o for r in done for o in r.outputs]
    latest, called = _latest_outputs(done), _called(done)
    calls: list[ToolCall] = []
    outputs: list[Any] = []
    sizes: list[int] = []
    simulated = False
    for s, members in enumerate(call_steps(turn, ctx.mappings)):
        functions = [turn.functions[j] for j in members]
        # Forward translation sees the step's signatures, as in the paper; the checks below still
        # refuse calls that use them wrongly (one twice, another left out).
        offered = [ctx.specs[n] for n in dict.fromkeys(functions)]
        known = [
            dep
            for f in dict.fromkeys(functions)
            for dep in dependencies(f, called + [c.name for c in calls], ctx.mappings)
        ]
        ask = ForwardAsk(
            request,
            offered,
            _history_text(done),
            _outputs_text(done, outputs),
            len(functions),
            carried=_carried(known, latest),
        )
        step = await _translate_forward(ctx.client, ask, seed * 10 + s, ids)
        if isinstance(step, str):
            return _reject(index, "forward_translation_failed", step)
        if sorted(c.name for c in step) != sorted(functions):
            return _reject(
                index, "wrong_functions", f"calls {[c.name for c in step]} do not use the step's functions {functions}"
            )
        for call in step:
            problem = schema_problem(call, ctx.specs.get(call.name))
            if problem:
                return _reject(index, "schema", problem)
        for call in step:
            deps = dependencies(call.name, called + [c.name for c in calls], ctx.mappings)
            problem = dependency_problem(call, deps, latest)
            if problem:
                return _reject(index, "dependency", problem)
            mapped = {d.parameter for d in deps if d.source in latest}
            free = ToolCall(call.name, {k: v for k, v in call.arguments.items() if k not in mapped})
            missing = ungrounded(free, texts, earlier_outputs + outputs)
            if missing:
                return _reject(index, "ungrounded", f"{call.name}: {missing} not in the query or an earlier output")
        for call in step:
            execution = await ctx.executor.execute(call)
            if not execution.ok:
                return _reject(index, "execution", json.dumps(execution.output)[:300])
            simulated = simulated or execution.simulated
            if execution.llm_call_id:
                ids.append(execution.llm_call_id)
            outputs.append(execution.output)
            latest[call.name] = execution.output
        calls += step
        sizes.append(len(step))
    if ctx.settings.round_trip:
        problem = await _round_trip(ctx, request, calls[: sizes[0]] if sizes else [], done, tools, seed, ids)
        if problem:
            return _reject(index, "round_trip", problem)
    return TurnResult(
        index,
        CALL,
        turn.functions,
        query,
        calls,
        outputs,
        tools,
        llm_call_ids=ids,
        simulated=simulated,
        step_sizes=sizes,
    )


@dataclass(frozen=True)
class ForwardAsk:
    """One forward translation: the request, the functions to use and what is already known."""

    query: str
    offered: list[FunctionSpec]
    history: str
    outputs: str
    count: int
    exact: bool = True
    #: `function.parameter=value` for arguments that must come from earlier results
    carried: str = ""


async def _translate_forward(client: LLMClient, ask: ForwardAsk, seed: int, ids: list[str]) -> list[ToolCall] | str:
    """Query -> calls among the offered functions (`count` of them when `exact`), or why there are none."""
    carried = f"Values that come from those results: {ask.carried}\n" if ask.carried else ""
    prompt = FORWARD_PROMPT.format(
        functions="\n".join(describe(s) for s in ask.offered),
        history=ask.history,
        outputs=ask.outputs,
        carried=carried,
        query=ask.query,
    )
    reply = await client.chat(
        LLMRequest(
            messages=[{"role": "user", "content": prompt}],
            response_schema=calls_schema(ask.offered, exact=ask.count if ask.exact else None),
            temperature=0.0,
            max_tokens=96 * ask.count + 64,
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
    ctx: PathContext,
    request: str,
    calls: list[ToolCall],
    done: list[TurnResult],
    tools: list[str],
    seed: int,
    ids: list[str],
) -> str | None:
    """An independent forward translation, offered every tool of the turn, must give the same
    first-step calls (later steps depend on outputs the request cannot know)."""
    offered = [ctx.specs[n] for n in tools if n in ctx.specs]
    ask = ForwardAsk(request, offered, _history_text(done), _outputs_text(done, []), len(calls), exact=False)
    again = await _translate_forward(ctx.client, ask, seed, ids)
    mismatch = calls_mismatch(calls, [] if isinstance(again, str) else again, ctx.specs)
    return f"the query translates back to other calls: {mismatch}" if mismatch else None


async def translate_path(ctx: PathContext) -> list[TurnResult] | PathRejection:
    done: list[TurnResult] = []
    for index in range(len(ctx.path.turns)):
        result = await translate_turn(ctx, index, done)
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
    partition: Partition,
    factory: ExecutorFactory,
    tick: Callable[[], None] | None = None,
) -> TranslationOutcome:
    """Translate every stored path, each on a fresh executor with its own starting state."""
    specs, options = partition.specs, partition.options
    function_ids = {n: s.function_id(partition.tool_set) for n, s in specs.items()}

    async def one(i: int, row: dict[str, Any]) -> list[TurnResult] | PathRejection:
        path = SignaturePath.from_row(row)
        executor = factory.new(seed=conversation_seed(row["path_id"]))
        try:
            settings = TranslationSettings(options.max_attempts, seed=options.seed + i, round_trip=options.round_trip)
            return await translate_path(
                PathContext(
                    client,
                    path,
                    specs,
                    partition.mappings,
                    executor,
                    distractors_for(path, row["path_id"], specs, options),
                    settings,
                )
            )
        finally:
            executor.close()
            if tick:
                tick()

    results = await asyncio.gather(*(one(i, r) for i, r in enumerate(path_rows)))
    turns, rejections = [], []
    for row, result in zip(path_rows, results):
        if isinstance(result, PathRejection):
            rejections.append(result.as_row(partition.tool_set, partition.run_id, row["path_id"]))
        else:
            turns += [t.as_row(partition.tool_set, partition.run_id, row["path_id"], function_ids) for t in result]
    return TranslationOutcome(turns, rejections, len(path_rows))
