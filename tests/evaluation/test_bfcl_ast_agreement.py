"""The project's AST matcher agrees with bfcl's single-turn `ast_checker` on all of BFCL's single-turn Python data.

The single-turn shapes of the paper's mix (simple, multiple, parallel, parallel-multiple)
are judged by the same matcher as multi-turn turns (`calls_mismatch`); here it meets bfcl's
checker on each category's ground truth (every parameter's first accepted value) and on
corruptions of it: another function, a required argument dropped, a number or a string
changed, a number passed as a string, an unknown argument, a parallel call dropped. Both
must give the same verdict on the truth (valid, except where BFCL's data contradicts its own
function doc) and say invalid for every corruption.

One convention differs by design: BFCL accepts a string where the schema wants another type,
reading it as a variable name (`x="data['sales']"` for an array); the project's matcher
holds calls to their schema. Entries whose truth relies on that are counted and left out.
"""

import random

import pytest

from magnet_dagster.evaluation.bfcl_bridge import (
    AST_CATEGORIES, bfcl_ast_verdict, entry_specs, first_answer, load_category,
)
from magnet_dagster.tools.calls import ToolCall, calls_mismatch



def corruptions(calls: list[ToolCall], specs, rng: random.Random) -> dict[str, list[ToolCall]]:
    out: dict[str, list[ToolCall]] = {}
    i = rng.randrange(len(calls))
    call = calls[i]

    def replaced(new: ToolCall) -> list[ToolCall]:
        return calls[:i] + [new] + calls[i + 1:]

    others = [n for n in specs if n != call.name]
    out["other_function"] = replaced(ToolCall(others[0] if others else call.name + "_v2", call.arguments))
    required = [k for k in specs[call.name].required if k in call.arguments]
    if required:
        out["required_dropped"] = replaced(ToolCall(call.name, {k: v for k, v in call.arguments.items()
                                                                if k != required[0]}))
    numbers = [k for k, v in call.arguments.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        key = numbers[0]
        out["number_changed"] = replaced(ToolCall(call.name, {**call.arguments, key: call.arguments[key] + 7}))
        out["number_as_string"] = replaced(ToolCall(call.name, {**call.arguments, key: str(call.arguments[key])}))
    strings = [k for k, v in call.arguments.items() if isinstance(v, str) and v]
    if strings:
        key = strings[0]
        out["string_changed"] = replaced(ToolCall(call.name, {**call.arguments, key: call.arguments[key] + " zz"}))
    out["unknown_argument"] = replaced(ToolCall(call.name, {**call.arguments, "zz_extra": 1}))
    if len(calls) > 1:
        out["parallel_call_dropped"] = calls[:i] + calls[i + 1:]
    return out


@pytest.mark.parametrize("category", AST_CATEGORIES)
def test_project_and_bfcl_ast_checkers_agree(category):
    rng = random.Random(category)
    checked, disagreements = 0, []
    variables = []
    entries = load_category(category)
    for entry, possible in entries:
        specs = entry_specs(entry)
        truth = first_answer(possible)
        problem = calls_mismatch(truth, truth, specs)
        if problem and "wrong type" in problem:
            variables.append(entry["id"])
            continue
        variants = {"truth": truth, **corruptions(truth, specs, rng)}
        for label, calls in variants.items():
            theirs = bfcl_ast_verdict(entry, possible, calls, category)["valid"]
            ours = calls_mismatch(truth, calls, specs) is None and problem is None
            checked += 1
            if theirs != ours or (label != "truth" and ours):
                disagreements.append((entry["id"], label, theirs, ours))
    assert len(entries) >= 200 and len(variables) <= len(entries) // 20, variables
    assert checked >= 4 * (len(entries) - len(variables))
    assert disagreements == []
