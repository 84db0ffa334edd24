"""The project's checker and BFCL's own multi-turn checker agree on BFCL's ground truth and corruptions of it.

bfcl's checker runs as a library with the project's dispatcher in place of its `eval`
executor. The two checkers differ by design in one place: BFCL judges by executed state
and responses, the project by AST, so flipping a boolean flag of a read-only call (for
example `ls(a=True)` -> `ls(a=False)` in a folder without hidden files) is invalid by AST
and still valid by execution; so does `tail(lines=8)` for `tail(lines=1)` on a one-line
file. Agreement is therefore required on every variant whose execution differs from the
ground truth's; a variant that executes identically must still be caught by the AST
matcher, and such variants stay few.
"""

import ast
import random

import pytest

from magnet_dagster.evaluation.bfcl_bridge import (
    bfcl_verdict, class_specs, dispatcher_execute, load_category, project_verdict,
)

CATEGORIES = ["multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context"]
PER_CATEGORY = 25


def drop_last_call(gt: list[list[str]], rng: random.Random) -> list[list[str]]:
    last = max(i for i, turn in enumerate(gt) if turn)
    return [turn[:-1] if i == last else turn for i, turn in enumerate(gt)]


def change_argument(gt: list[list[str]], rng: random.Random) -> list[list[str]] | None:
    spots = []
    for i, turn in enumerate(gt):
        for j, text in enumerate(turn):
            call = ast.parse(text, mode="eval").body
            values = list(call.args) + [k.value for k in call.keywords]
            spots += [(i, j, n) for n, v in enumerate(values)
                      if isinstance(v, ast.Constant) and isinstance(v.value, (str, int, float))
                      and not isinstance(v.value, bool)]
    if not spots:
        return None
    i, j, n = rng.choice(spots)
    call = ast.parse(gt[i][j], mode="eval").body
    slots = [("args", k) for k in range(len(call.args))] + [("kw", k) for k in range(len(call.keywords))]
    kind, k = slots[n]
    node = call.args[k] if kind == "args" else call.keywords[k].value
    node.value = node.value + "_x" if isinstance(node.value, str) else node.value + 7
    out = [list(t) for t in gt]
    out[i][j] = ast.unparse(call)
    return out


def executes_identically(model: list[list[str]], gt: list[list[str]], entry: dict) -> bool:
    """Same results and same final state when both run from the entry's initial config."""
    runs = []
    for label, turns in (("variant", model), ("truth", gt)):
        name = f"magnet_same_{label}_{random.random()}"
        results = []
        instances = {}
        for turn in turns:
            out, instances = dispatcher_execute(turn, entry["initial_config"], entry["involved_classes"], name,
                                                entry["id"], long_context="long_context" in entry["id"])
            results += out
        state = {k: repr(sorted((a, repr(v)) for a, v in vars(o).items() if not a.startswith("_")))
                 for k, o in instances.items()}
        runs.append((results, state))
    return runs[0] == runs[1]


@pytest.mark.parametrize("category", CATEGORIES)
def test_checkers_agree_on_ground_truth_and_corruptions(category):
    rng = random.Random(category)
    compared = same_execution = 0
    for entry, gt in load_category(category)[:PER_CATEGORY]:
        specs = class_specs(entry["involved_classes"])
        variants = {"ground_truth": gt, "dropped_call": drop_last_call(gt, rng),
                    "changed_argument": change_argument(gt, rng)}
        for name, model in variants.items():
            if model is None:
                continue
            theirs = bfcl_verdict([[turn] for turn in model], gt, entry, category)["valid"]
            ours, reason = project_verdict(model, gt, specs)
            assert ours == (name == "ground_truth"), f"{entry['id']} {name}: {reason}"
            if name != "ground_truth" and executes_identically(model, gt, entry):
                same_execution += 1
                continue
            assert theirs == ours, f"{entry['id']} {name}: bfcl={theirs} project={ours} ({reason})"
            compared += 1
    assert compared >= PER_CATEGORY * 2
    assert same_execution <= PER_CATEGORY // 5, f"{same_execution} corruptions executed like the ground truth"


def test_bridge_never_evaluates_model_text():
    entry, gt = load_category("multi_turn_base")[0]
    results, _ = dispatcher_execute(["__import__('os').system('echo pwned')", "cd(folder=open('x'))"],
                                    entry["initial_config"], entry["involved_classes"], "magnet_safety", entry["id"])
    assert all(r.startswith("Error during execution") for r in results)
