"""BFCL's own checkers, run as a library: multi-turn with the project's dispatcher underneath,
and the single-turn AST checker for the shapes of the paper's mix (simple, multiple, parallel).

bfcl's checker executes calls through `execute_multi_turn_func_call`, which `eval`s model
text. Here that function is swapped, for the duration of a check, for one with the same
signature and result format that parses each call with `ast` and runs it through the
allow-list `Dispatcher`. Instances are cached per (model name, entry id), as bfcl does, so
callers use a unique model name per evaluation to keep state from leaking between them.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import os
import sys
import tempfile
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magnet_dagster.tools import bfcl
from magnet_dagster.tools.calls import CallParseError, ToolCall, calls_mismatch, parse_python_call
from magnet_dagster.tools.dispatcher import Dispatcher
from magnet_dagster.tools.formats import function_from_object
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
    _, _, stateless = bfcl.class_files()
    key = (model_name + ("_eval" if is_evaL_run else ""), test_entry_id)
    instances = _instances.get(key)
    if instances is None:
        instances = {}
        for name in involved_classes:
            obj = bfcl.load_class(name)()
            if name not in stateless:
                obj._load_scenario(copy.deepcopy(initial_config.get(name, {})), long_context=long_context)
            instances[name] = obj
        _instances[key] = instances
    allowed = {m for obj in instances.values() for m in dir(type(obj)) if not m.startswith("_")}
    dispatcher = Dispatcher.for_instances(instances, allowed)
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


# ------------------------------------------------------------------ student runs

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


def turn_tools(entry: dict[str, Any], specs: dict[str, FunctionSpec], turn: int) -> list[dict[str, Any]]:
    """Tools offered at `turn`: excluded ones never, missed ones only from their turn on."""
    excluded = set(entry.get("excluded_function") or [])
    missed = {name: int(t) for t, names in (entry.get("missed_function") or {}).items() for name in names}
    return [
        s.openai_tool()
        for n, s in sorted(specs.items())
        if n not in excluded and (n not in missed or turn >= missed[n])
    ]


async def run_student_on_entry(
    client: Any, entry: dict[str, Any], category: str, max_steps: int = 4
) -> list[list[list[str]]]:
    """The student's decoded calls for one BFCL entry: turn -> step -> call strings.

    Each step's calls are executed through the dispatcher and their results fed back,
    until the student answers without a call or `max_steps` is reached.
    """
    from magnet_dagster.llm.client import LLMRequest
    from magnet_dagster.tools.messages import tool_messages

    specs = class_specs(entry["involved_classes"])
    model_name = f"magnet_student_{uuid.uuid4().hex[:12]}"
    history: list[dict[str, Any]] = []
    decoded: list[list[list[str]]] = []
    try:
        for turn, messages in enumerate(entry["question"]):
            history.extend(messages)
            steps: list[list[str]] = []
            for step in range(max_steps):
                reply = await client.chat(
                    LLMRequest(
                        messages=list(history), tools=turn_tools(entry, specs, turn), temperature=0.0, max_tokens=256
                    )
                )
                calls = reply.tool_calls() if reply.ok else []
                if not calls:
                    history.append({"role": "assistant", "content": reply.content})
                    break
                texts = [c.python() for c in calls]
                outputs, _ = dispatcher_execute(
                    texts,
                    entry["initial_config"],
                    entry["involved_classes"],
                    model_name,
                    entry["id"],
                    long_context="long_context" in category,
                )
                assistant, results = tool_messages(calls, outputs, f"{turn}_{step}")
                history += [assistant, *results]
                steps.append(texts)
            decoded.append(steps)
    finally:
        for key in [k for k in _instances if k[0] == model_name]:
            del _instances[key]
    return decoded


def leaderboard_table(results: dict[str, list[bool]], model: str) -> list[dict[str, Any]]:
    """BFCL's multi-turn leaderboard layout: overall accuracy, then one column per category."""
    row: dict[str, Any] = {"Model": model}
    accuracies = []
    for category, column in LEADERBOARD_COLUMNS.items():
        verdicts = results.get(category, [])
        acc = sum(verdicts) / len(verdicts) if verdicts else None
        row[column] = f"{acc:.2%}" if acc is not None else "n/a"
        if acc is not None:
            accuracies.append(acc)
    overall = sum(accuracies) / len(accuracies) if accuracies else None
    return [
        {
            "Model": model,
            "Multi Turn Overall Acc": f"{overall:.2%}" if overall is not None else "n/a",
            **{k: v for k, v in row.items() if k != "Model"},
        }
    ]


async def run_bfcl_categories(
    client: Any, categories: list[str], entries_per_category: int, max_steps: int, run_id: str
) -> tuple[list[dict[str, Any]], dict[str, list[bool]]]:
    """(`eval_results` rows, verdicts by category) for the first entries of each BFCL category."""
    items = [(cat, entry, gt) for cat in categories for entry, gt in load_category(cat)[:entries_per_category]]

    async def one(cat: str, entry: dict[str, Any], gt: list[list[str]]) -> dict[str, Any]:
        decoded = await run_student_on_entry(client, entry, cat, max_steps)
        verdict = bfcl_verdict(decoded, gt, entry, cat)
        return {
            "result_id": f"{run_id[:8]}-{entry['id']}",
            "tool_set": "bfcl",
            "run_id": run_id,
            "student_model": client.model,
            "trajectory_id": entry["id"],
            "turn_index": -1,
            "kind": cat,
            "expected": None,
            "got": decoded,
            "verdict": bool(verdict["valid"]),
            "reason": verdict.get("error_message"),
            "llm_call_id": None,
            "mode": "bfcl_multi_turn",
        }

    rows = list(await asyncio.gather(*(one(*item) for item in items)))
    by_category: dict[str, list[bool]] = {}
    for row in rows:
        by_category.setdefault(row["kind"], []).append(row["verdict"])
    return rows, by_category
