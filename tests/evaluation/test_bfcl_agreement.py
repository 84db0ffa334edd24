"""The project's checkers and BFCL's own multi-turn checker agree on BFCL's ground truth and corruptions of it.

bfcl's checker runs as a library with the project's dispatcher in place of its `eval`
executor.

The project's free-running verdict (what `student_evaluation` reports as turn accuracy) is
judged as BFCL judges: state, then the reference's results among the student's. It is run
here through the project's own runner, on BFCL entries turned into stored conversations and
a scripted fake student that replays a variant, and must equal BFCL's verdict on the ground
truth, the ground truth one call per step, a dropped call, a changed argument and a repeated
call, for every entry compared.

The strict per-call AST metric differs from BFCL by design where execution cannot tell two
answers apart: a repeated call that leaves state and results right (`mkdir` twice: the second
fails and changes nothing) is accepted by BFCL and rejected by AST; so is a changed argument
that executes identically, for example flipping a boolean flag of a read-only call
(`ls(a=True)` -> `ls(a=False)` in a folder without hidden files) or `tail(lines=8)` for
`tail(lines=1)` on a one-line file. For the AST comparison, agreement is therefore required on
every variant whose execution differs from the ground truth's; a variant that executes
identically must still be caught by the AST matcher, and such variants stay few.
"""

import ast
import asyncio
import json
import random

import pytest

from magnet_dagster.evaluation.bfcl_bridge import (
    bfcl_verdict, class_specs, dispatcher_execute, entry_executor, entry_trajectory, load_category, project_verdict,
)
from magnet_dagster.evaluation.runner import free_running
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.calls import parse_python_call
from magnet_dagster.tools.messages import ADDITIONAL_FUNCTIONS_PROMPT, split_holdout
from tests.fakes import ScriptedFakeBackend

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


# ------------------------------------------------------------ free-running verdict

def repeat_call(gt: list[list[str]], rng: random.Random) -> list[list[str]] | None:
    """One call made a second time, right after itself."""
    spots = [(i, j) for i, turn in enumerate(gt) for j in range(len(turn))]
    if not spots:
        return None
    i, j = rng.choice(spots)
    out = [list(t) for t in gt]
    out[i].insert(j + 1, gt[i][j])
    return out


def replaying_student(runs: dict[str, tuple[list[list[list[str]]], dict]]) -> ScriptedFakeBackend:
    """A scripted fake student (named as such) for many runs at once, told apart by the label
    in the first (system) message: at turn t, step s it sends the calls of `steps_by_turn[t][s]`
    of that run, and once they are spent, a refusal with no call."""

    def script(request):
        steps_by_turn, specs = runs[request.messages[0]["content"]]
        order = lambda n: list(specs[n].properties) if n in specs else None
        users = [i for i, m in enumerate(request.messages) if m["role"] == "user"]
        turn = len(users) - 1
        step = sum(1 for m in request.messages[users[-1]:] if m["role"] == "assistant" and m.get("tool_calls"))
        steps = steps_by_turn[turn] if turn < len(steps_by_turn) else []
        if step < len(steps) and steps[step]:
            calls = [parse_python_call(c, order) for c in steps[step]]
            return "".join(f"<tool_call>{json.dumps(c.as_dict())}</tool_call>" for c in calls)
        return "I cannot do that with what I have."

    return ScriptedFakeBackend(script)


def project_free_running(cases: list[tuple[str, list[list[list[str]]], dict, list[list[str]]]], tmp_path) -> dict:
    """The project's free-running runner (the code `student_evaluation` runs) on BFCL entries,
    each with a student that replays its steps: {label: turn verdicts}."""
    runs, jobs = {}, []
    for label, steps, entry, gt in cases:
        specs = class_specs(entry["involved_classes"])
        trajectory = entry_trajectory(entry, gt)
        trajectory["trajectory_id"] = label
        # the label routes the fake's answers and keeps runs from sharing cache entries
        trajectory["messages"].insert(0, {"role": "system", "content": label})
        runs[label] = (steps, specs)
        jobs.append((label, trajectory, specs, entry))
    client = LLMClient(replaying_student(runs), LineageStore(tmp_path / "l.duckdb"), tmp_path / "journal",
                       concurrency=8).open()

    async def main():
        try:
            out = await asyncio.gather(*(free_running(client, t, specs, [], lambda e=entry: entry_executor(e))
                                         for _, t, specs, entry in jobs))
        finally:
            await client.aclose()
        return dict(zip([label for label, *_ in jobs], out))

    return asyncio.run(main())


@pytest.mark.parametrize("category", CATEGORIES)
def test_free_running_verdict_agrees_with_bfcl(category, tmp_path):
    """The project's free-running conversation verdict equals BFCL's `multi_turn_checker` verdict
    on the ground truth and on a dropped call, a changed argument, a repeated call and the
    ground truth spread one call per step; the strict AST metric never accepts what BFCL
    rejects, and never rejects the ground truth; where it is stricter is counted."""
    rng = random.Random(f"free-{category}")
    cases, theirs = [], {}
    for entry, gt in load_category(category)[:PER_CATEGORY]:
        variants = {"ground_truth": [[turn] for turn in gt],
                    "one_call_per_step": [[[c] for c in turn] for turn in gt]}
        for name, fn in (("dropped_call", drop_last_call), ("changed_argument", change_argument),
                         ("repeated_call", repeat_call)):
            model = fn(gt, rng)
            if model is not None:
                variants[name] = [[turn] for turn in model]
        for name, steps in variants.items():
            label = f"{entry['id']} {name}"
            theirs[label] = bfcl_verdict(steps, gt, entry, category)
            cases.append((label, steps, entry, gt))
    ours = project_free_running(cases, tmp_path)
    stricter = []
    for label, _, _, gt in cases:
        verdicts = ours[label]
        assert len(verdicts) == len(gt)
        valid = all(v.verdict for v in verdicts)
        reasons = [f"turn {v.turn_index}: {v.reason}" for v in verdicts if not v.verdict]
        assert valid == theirs[label]["valid"], f"{label}: bfcl={theirs[label].get('error_message')} project={reasons}"
        strict = all(v.strict_match for v in verdicts)
        assert not (strict and not valid), f"{label}: the strict AST metric accepts what BFCL rejects"
        if valid and not strict:
            stricter.append(label)
    assert not [s for s in stricter if s.endswith(("ground_truth", "one_call_per_step"))], stricter
    assert sum(label.endswith("_call") or label.endswith("argument") for label, *_ in cases) >= PER_CATEGORY * 2
    kinds = sorted({s.rsplit(" ", 1)[1] for s in stricter})
    print(f"\n{category}: {len(cases)} verdicts agree with BFCL; strict AST stricter on {len(stricter)} ({kinds})")


def test_a_bfcl_entry_replays_as_a_stored_conversation():
    """`entry_trajectory`: BFCL's turns as a stored test conversation in the project's conventions
    (one user message per turn, the held-out turn as `holdout_message`, `turn_meta` per turn)."""
    entry, gt = load_category("multi_turn_miss_func")[0]
    trajectory = entry_trajectory(entry, gt)
    (turn, names), = entry["missed_function"].items()
    users = [m for m in trajectory["messages"] if m["role"] == "user"]
    assert len(users) == len(gt) == len(trajectory["turn_meta"])
    shown, added = split_holdout(users[int(turn)])
    assert shown["content"] == ADDITIONAL_FUNCTIONS_PROMPT and [t["function"]["name"] for t in added] == names
    assert not set(names) & {t["function"]["name"] for t in trajectory["tools"]}
    assert trajectory["turn_meta"][int(turn) - 1]["kind"] == "miss_func"
    assert trajectory["turn_meta"][int(turn)] == {"kind": "call", "missing": [], "holdout": names,
                                                  "functions": [c.split("(")[0] for c in gt[int(turn)]]}
