"""BFCL's own checkers, run as a library: multi-turn with the project's dispatcher underneath,
and the single-turn AST checker for the shapes of the paper's mix (simple, multiple, parallel).

bfcl's checker executes calls through `execute_multi_turn_func_call`, which `eval`s model
text. Here that function is swapped, for the duration of a check, for one with the same
signature and result format that parses each call with `ast` and runs it through the
allow-list `Dispatcher`. Instances are cached per (model name, entry id), as bfcl does, so
callers use a unique model name per evaluation to keep state from leaking between them.

The student is run on an entry as bfcl's harness runs a function-calling model
(`model_handler/base_handler.py`, `inference_multi_turn_FC`): the involved classes'
functions in func-doc order less the held-out ones, which are added at their turn with
bfcl's FC prompt as that turn's user message; each turn steps until the student answers
without a call, and a student still calling after `MAXIMUM_STEP_LIMIT` (20) steps is forced
to quit, which fails the entry. `entry_trajectory` turns an entry into a stored conversation
so the project's own runner can replay it (the agreement tests use that).
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import math
import os
import sys
import tempfile
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magnet_dagster.evaluation.runner import MAX_STEPS_PER_TURN, student_turn
from magnet_dagster.graph.paths import CALL, IRRELEVANT, MISS_FUNC, MISS_PARAMS
from magnet_dagster.tools import bfcl
from magnet_dagster.tools.calls import CallParseError, ToolCall, calls_mismatch, parse_python_call
from magnet_dagster.tools.dispatcher import Dispatcher
from magnet_dagster.tools.executors import DispatchExecutor
from magnet_dagster.tools.formats import function_from_object
from magnet_dagster.tools.messages import ADDITIONAL_FUNCTIONS_PROMPT, holdout_message, tool_messages
from magnet_dagster.tools.spec import FunctionSpec

_instances: dict[tuple[str, str], dict[str, object]] = {}


def _ensure_project_root() -> None:
    """bfcl reads BFCL_PROJECT_ROOT at import; point it at a scratch folder, not site-packages."""
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(Path(tempfile.gettempdir()) / "magnet_bfcl_root"))


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def entry_instances(initial_config: dict, involved_classes: list, long_context: bool = False) -> dict[str, object]:
    """Fresh instances of an entry's classes, loaded with its initial config (as bfcl does)."""
    _, _, stateless = bfcl.class_files()
    instances: dict[str, object] = {}
    for name in involved_classes:
        obj = bfcl.load_class(name)()
        if name not in stateless:
            obj._load_scenario(copy.deepcopy(initial_config.get(name, {})), long_context=long_context)
        instances[name] = obj
    return instances


def _public_methods(instances: dict[str, object]) -> set[str]:
    return {m for obj in instances.values() for m in dir(type(obj)) if not m.startswith("_")}


def is_long_context(entry: dict[str, Any]) -> bool:
    """bfcl's rule (`multi_turn_checker`, `inference_multi_turn_FC`): from the entry id's category."""
    category = entry["id"].rsplit("_", 1)[0]
    return "long_context" in category or "composite" in category


def dispatcher_execute(
    func_call_list: list[str],
    initial_config: dict,
    involved_classes: list,
    model_name: str,
    test_entry_id: str,
    long_context: bool = False,
    is_evaL_run: bool = False,
) -> tuple[list[str], dict[str, object]]:
    """Drop-in for bfcl's `execute_multi_turn_func_call`, without `eval`."""
    key = (model_name + ("_eval" if is_evaL_run else ""), test_entry_id)
    instances = _instances.get(key)
    if instances is None:
        instances = entry_instances(initial_config, involved_classes, long_context)
        _instances[key] = instances
    dispatcher = Dispatcher.for_instances(instances, _public_methods(instances))
    results = []
    for text in func_call_list:
        try:
            call = parse_python_call(text, dispatcher.parameter_order)
        except CallParseError as exc:
            results.append(f"Error during execution: {exc}")
            continue
        output = dispatcher.execute(call)
        if isinstance(output, dict) and set(output) == {"error"} and str(output["error"]).startswith(call.name + ":"):
            results.append(f"Error during execution: {output['error']}")
        else:
            results.append(_result_text(output))
    return results, instances


def entry_executor(entry: dict[str, Any]) -> DispatchExecutor:
    """The project's executor over an entry's classes from its initial config (the same
    instances and dispatcher `dispatcher_execute` uses), for the project's own runner."""
    instances = entry_instances(entry["initial_config"], entry["involved_classes"], is_long_context(entry))
    return DispatchExecutor(Dispatcher.for_instances(instances, _public_methods(instances)), instances)


@contextmanager
def dispatcher_underneath() -> Iterator[Any]:
    """bfcl's multi_turn_checker module, with our executor in place of its `eval` one."""
    _ensure_project_root()
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_checker as checker

    original = checker.execute_multi_turn_func_call
    checker.execute_multi_turn_func_call = dispatcher_execute
    try:
        yield checker
    finally:
        checker.execute_multi_turn_func_call = original


def bfcl_verdict(
    model_turns: list[list[list[str]]], ground_truth: list[list[str]], entry: dict[str, Any], category: str
) -> dict[str, Any]:
    """bfcl's verdict for a model's decoded calls (turn -> step -> call strings)."""
    model_name = f"magnet_{uuid.uuid4().hex[:12]}"
    try:
        with dispatcher_underneath() as checker:
            return checker.multi_turn_checker(model_turns, ground_truth, entry, category, model_name)
    finally:
        for key in [k for k in _instances if k[0].startswith(model_name)]:
            del _instances[key]


def class_specs(classes: list[str]) -> dict[str, FunctionSpec]:
    return {s.name: s for s in bfcl.bfcl_functions(classes, function_from_object)}


def project_verdict(
    model_turns: list[list[str]], ground_truth: list[list[str]], specs: dict[str, FunctionSpec]
) -> tuple[bool, str | None]:
    """The project's AST matcher over the same turns: every turn's calls must match."""

    def order(name: str) -> list[str] | None:
        return list(specs[name].properties) if name in specs else None

    for i, (got, want) in enumerate(zip(model_turns, ground_truth)):
        try:
            got_calls = [parse_python_call(c, order) for c in got]
        except CallParseError as exc:
            return False, f"turn {i}: {exc}"
        reason = calls_mismatch([parse_python_call(c, order) for c in want], got_calls, specs)
        if reason:
            return False, f"turn {i}: {reason}"
    return True, None


def load_category(category: str) -> list[tuple[dict[str, Any], list[list[str]]]]:
    """(test entry, ground truth or possible answer) pairs of one BFCL category, from the installed package."""
    data = bfcl.package_dir() / "data"
    entries = [json.loads(x) for x in (data / f"BFCL_v4_{category}.json").read_text().splitlines() if x.strip()]
    answers = {
        a["id"]: a["ground_truth"]
        for a in (
            json.loads(x)
            for x in (data / "possible_answer" / f"BFCL_v4_{category}.json").read_text().splitlines()
            if x.strip()
        )
    }
    return [(e, answers[e["id"]]) for e in entries if e["id"] in answers]


# ------------------------------------------------------------ single-turn AST

AST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")
_AST_MODEL = "magnet-ast"


@dataclass(frozen=True)
class _FlagsOnly:
    underscore_to_dot: bool = False


def ast_checker_module() -> Any:
    """bfcl's `ast_checker` module.

    Its model table (`constants.model_config`) imports every provider SDK, which the lean
    install leaves out; the checker reads one flag from it (whether the model's function
    names had dots replaced), so where the table cannot load a one-entry table stands in.
    """
    _ensure_project_root()
    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except ImportError:
            table = types.ModuleType(name)
            setattr(table, "MODEL_CONFIG_MAPPING", {_AST_MODEL: _FlagsOnly()})  # noqa: B010 (a module made here)
            sys.modules[name] = table
    from bfcl_eval.eval_checker.ast_eval import ast_checker

    if _AST_MODEL not in ast_checker.MODEL_CONFIG_MAPPING:
        ast_checker.MODEL_CONFIG_MAPPING[_AST_MODEL] = _FlagsOnly()
    return ast_checker


def bfcl_ast_verdict(
    entry: dict[str, Any], possible_answer: list[dict[str, Any]], calls: list[ToolCall], category: str
) -> dict[str, Any]:
    """bfcl's single-turn verdict (`valid`, `error`) for decoded calls."""
    from bfcl_eval.constants.enums import Language

    checker = ast_checker_module()
    output = [{c.name: dict(c.arguments)} for c in calls]
    return checker.ast_checker(entry["function"], output, possible_answer, Language.PYTHON, category, _AST_MODEL)


def entry_specs(entry: dict[str, Any]) -> dict[str, FunctionSpec]:
    return {f["name"]: function_from_object(f, entry["id"]) for f in entry["function"]}


def first_answer(possible_answer: list[dict[str, Any]]) -> list[ToolCall]:
    """The ground truth as calls: each parameter's first accepted value; "" (optional) left out."""

    def collapse(value: Any) -> Any:
        if isinstance(value, dict):  # a dict's fields list their accepted values in turn
            return {k: collapse(v[0]) for k, v in value.items() if v and v[0] != ""}
        if isinstance(value, list):
            return [collapse(x) if isinstance(x, dict) else x for x in value]
        return value

    calls = []
    for item in possible_answer:
        ((name, params),) = item.items()
        calls.append(ToolCall(name, collapse(params)))
    return calls


LEADERBOARD_COLUMNS = {
    "multi_turn_base": "Base",
    "multi_turn_miss_func": "Miss Func",
    "multi_turn_miss_param": "Miss Param",
    "multi_turn_long_context": "Long Context",
}
#: entries per category when the student is not served by vLLM (a smoke run on the local model)
SMALL_RUN_ENTRIES = 3
#: entries run at once (each holds its own class instances)
ENTRIES_IN_FLIGHT = 32


def default_entries_per_category(student_kind: str) -> int | None:
    """All entries (None) when the student is served by vLLM, else a small smoke run."""
    return None if student_kind == "vllm" else SMALL_RUN_ENTRIES


def turn_tools(entry: dict[str, Any], specs: dict[str, FunctionSpec], turn: int) -> list[dict[str, Any]]:
    """The tools bfcl offers at `turn`, in its order.

    bfcl (`utils.populate_test_cases_with_predefined_functions`) offers every function of the
    involved classes in their func-doc order, less the held-out ones; `inference_multi_turn_FC`
    appends a turn's held-out functions when that turn comes. `excluded_function` in the data
    is not read by the installed bfcl, so it is not applied here either.
    """
    holdout = sorted(((int(t), names) for t, names in (entry.get("missed_function") or {}).items()))
    held = {name for _, names in holdout for name in names}
    offered = [s.openai_tool() for n, s in specs.items() if n not in held]
    for t, names in holdout:
        if t <= turn:
            offered += [specs[n].openai_tool() for n in names if n in specs]
    return offered


def _parameter_order(specs: dict[str, FunctionSpec]) -> Callable[[str], list[str] | None]:
    return lambda name: list(specs[name].properties) if name in specs else None


def entry_trajectory(entry: dict[str, Any], ground_truth: list[list[str]]) -> dict[str, Any]:
    """A BFCL entry as a stored test conversation (messages, tools, `turn_meta`), so the
    project's own runner can replay it: the reference steps are the ground truth (one step
    per turn) with their executed results; a held-out turn's user message is
    `holdout_message`; a turn without ground-truth calls is `miss_func` when functions are
    added at the next turn, `miss_params` in the miss-param category, else `irrelevant`."""
    specs = class_specs(entry["involved_classes"])
    order = _parameter_order(specs)
    holdout = {int(t): list(names) for t, names in (entry.get("missed_function") or {}).items()}
    category = entry["id"].rsplit("_", 1)[0]
    oracle = entry_executor(entry)
    messages: list[dict[str, Any]] = []
    meta: list[dict[str, Any]] = []
    try:
        for t, question in enumerate(entry["question"]):
            if t in holdout:
                messages.append(holdout_message([specs[n] for n in holdout[t] if n in specs]))
            else:
                messages.extend(question)
            calls = [parse_python_call(c, order) for c in ground_truth[t]]
            if calls:
                outputs = [oracle.dispatcher.execute(c) for c in calls]
                assistant, results = tool_messages(calls, outputs, t)
                messages += [assistant, *results, {"role": "assistant", "content": "Done."}]
                kind = CALL
            else:
                kind = MISS_FUNC if t + 1 in holdout else MISS_PARAMS if "miss_param" in category else IRRELEVANT
                messages.append({"role": "assistant", "content": "I cannot do that with the functions I have."})
            meta.append(
                {"kind": kind, "missing": [], "functions": [c.name for c in calls], "holdout": holdout.get(t, [])}
            )
    finally:
        oracle.close()
    return {
        "trajectory_id": entry["id"],
        "path_id": entry["id"],
        "messages": messages,
        "tools": turn_tools(entry, specs, 0),
        "turn_meta": meta,
        "operations": [],
    }


async def run_student_on_entry(
    client: Any, entry: dict[str, Any], category: str, max_steps: int = MAX_STEPS_PER_TURN
) -> list[list[list[str]]]:
    """The student's decoded calls for one BFCL entry: turn -> step -> call strings.

    bfcl's `inference_multi_turn_FC`, step for step: a held-out turn (no question of its own)
    adds its functions and sends bfcl's FC prompt; each step's calls run through the
    dispatcher and their results are fed back (string results as they are), until the
    student answers without a call; a student still calling after `max_steps` steps is
    forced to quit and the entry ends there (fewer turns than the ground truth: invalid).
    """
    specs = class_specs(entry["involved_classes"])
    model_name = f"magnet_student_{uuid.uuid4().hex[:12]}"
    holdout = entry.get("missed_function") or {}
    history: list[dict[str, Any]] = []
    decoded: list[list[list[str]]] = []

    async def execute(calls: list[ToolCall]) -> list[Any]:
        texts = [c.python() for c in calls]
        outputs, _ = dispatcher_execute(
            texts, entry["initial_config"], entry["involved_classes"], model_name, entry["id"], is_long_context(entry)
        )
        return outputs

    try:
        for turn, messages in enumerate(entry["question"]):
            if str(turn) in holdout:
                messages = [{"role": "user", "content": ADDITIONAL_FUNCTIONS_PROMPT}]
            history.extend(messages)
            done = await student_turn(
                client, history, turn_tools(entry, specs, turn), execute, max_steps, 256, str(turn), True
            )
            decoded.append([[c.python() for c in step.calls] for step in done.call_steps])
            if done.forced_quit:
                break
    finally:
        for key in [k for k in _instances if k[0] == model_name]:
            del _instances[key]
    return decoded


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def category_scores(results: dict[str, list[bool]]) -> list[dict[str, Any]]:
    """Per category: entries, correct, accuracy and its 95% Wilson interval."""
    out = []
    for category, verdicts in results.items():
        n, k = len(verdicts), sum(verdicts)
        interval = wilson_interval(k, n)
        out.append(
            {
                "category": category,
                "entries": n,
                "correct": k,
                "accuracy": round(k / n, 4) if n else None,
                "ci95_low": round(interval[0], 4) if interval else None,
                "ci95_high": round(interval[1], 4) if interval else None,
            }
        )
    return out


def _pct(value: float | None) -> str:
    return f"{value:.2%}" if value is not None else "n/a"


def leaderboard_table(results: dict[str, list[bool]], model: str) -> list[dict[str, Any]]:
    """BFCL's multi-turn leaderboard layout (overall accuracy, the unweighted mean of the
    categories, then one column per category), with a row of entry counts and a row of 95%
    Wilson intervals under it."""
    accuracy: dict[str, Any] = {"Model": model}
    entries: dict[str, Any] = {"Model": "entries"}
    interval: dict[str, Any] = {"Model": "95% interval (Wilson)"}
    accuracies = []
    for category, column in LEADERBOARD_COLUMNS.items():
        verdicts = results.get(category, [])
        n, k = len(verdicts), sum(verdicts)
        acc = k / n if n else None
        bounds = wilson_interval(k, n)
        accuracy[column] = _pct(acc)
        entries[column] = n
        interval[column] = f"{bounds[0]:.1%}–{bounds[1]:.1%}" if bounds else "n/a"
        if acc is not None:
            accuracies.append(acc)
    overall = sum(accuracies) / len(accuracies) if accuracies else None
    return [
        {"Model": accuracy["Model"], "Multi Turn Overall Acc": _pct(overall), **accuracy},
        {
            "Model": entries["Model"],
            "Multi Turn Overall Acc": sum(v for k, v in entries.items() if k != "Model"),
            **entries,
        },
        {"Model": interval["Model"], "Multi Turn Overall Acc": "n/a (mean of categories)", **interval},
    ]


FORCE_TERMINATED = (
    "Model was force-terminated during inference phase. The length of the model result turns ({got}) does not "
    "match the length of the ground truth turns ({want})."
)


async def run_bfcl_categories(
    client: Any,
    categories: list[str],
    entries_per_category: int | None,
    max_steps: int,
    run_id: str,
    checkpoint: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, list[bool]]]:
    """(`eval_results` rows, verdicts by category) for the first entries of each BFCL category
    (all of them when `entries_per_category` is None); `checkpoint` as in `verdict_row`."""
    items = [(cat, entry, gt) for cat in categories for entry, gt in load_category(cat)[:entries_per_category]]
    gate = asyncio.Semaphore(ENTRIES_IN_FLIGHT)

    async def one(cat: str, entry: dict[str, Any], gt: list[list[str]]) -> dict[str, Any]:
        async with gate:
            decoded = await run_student_on_entry(client, entry, cat, max_steps)
        if len(decoded) != len(gt):  # bfcl's eval_runner: force-terminated entries fail
            verdict = {"valid": False, "error_message": FORCE_TERMINATED.format(got=len(decoded), want=len(gt))}
        else:
            verdict = bfcl_verdict(decoded, gt, entry, cat)
        return {
            "result_id": f"{run_id[:8]}-{entry['id']}" + (f"-{client.model}" if checkpoint else ""),
            "tool_set": "bfcl",
            "run_id": run_id,
            "student_model": client.model,
            "trajectory_id": entry["id"],
            "turn_index": -1,
            "kind": cat,
            "expected": gt,
            "got": decoded,
            "verdict": bool(verdict["valid"]),
            "reason": verdict.get("error_message"),
            "llm_call_id": None,
            "mode": "bfcl_multi_turn",
            "checkpoint": checkpoint,
        }

    rows = list(await asyncio.gather(*(one(*item) for item in items)))
    by_category: dict[str, list[bool]] = {cat: [] for cat in categories}
    for row in rows:
        by_category[row["kind"]].append(row["verdict"])
    return rows, by_category
