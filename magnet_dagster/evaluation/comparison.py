"""Two (or more) students scored on the same items, side by side.

Rows are `eval_results` rows of one run that evaluated several checkpoints (the base student
and the trained one): the same test turns of each tool set, the same BFCL entries. One line
per tool set and mode, then per turn kind and per category, with the counts each rate is of,
so "33% → 50%" never hides that it is 1 of 3 → 1 of 2.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: BFCL's rows are one per entry, their `kind` is the category
BFCL_MODE = "bfcl_multi_turn"


def _groups(row: Mapping[str, Any]) -> Iterable[str]:
    """The lines a row counts in: all of its tool set and mode, its turn kind, its categories."""
    yield "all"
    if row.get("mode") == BFCL_MODE:
        yield f"category: {row['kind']}"
        return
    yield f"kind: {row['kind']}"
    for category in row.get("categories") or []:
        yield f"category: {category}"


def _cell(verdicts: list[bool]) -> str:
    if not verdicts:
        return "—"
    correct = sum(verdicts)
    return f"{correct} of {len(verdicts)} ({correct / len(verdicts):.0%})"


def side_by_side(rows: Iterable[Mapping[str, Any]], models: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per (tool set, mode, group) with a column per model in `models` (the order the
    reader compares them in, e.g. base first) holding "correct of items (rate)"."""
    verdicts: dict[tuple[str, str, str], dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        scope = (row["tool_set"], row.get("mode") or "teacher_forced")
        for group in _groups(row):
            verdicts[(*scope, group)][row["student_model"]].append(bool(row["verdict"]))
    out = []
    for tool_set, mode, group in sorted(verdicts, key=lambda k: (k[0] == "bfcl", k[0], k[1], k[2] != "all", k[2])):
        cells = verdicts[(tool_set, mode, group)]
        out.append(
            {"tool set": tool_set, "mode": mode.replace("_", " "), "group": group}
            | {model: _cell(cells.get(model, [])) for model in models}
        )
    return out


def overall(rows: Iterable[Mapping[str, Any]], models: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(correct, items) per model over everything it was scored on."""
    totals = {m: [0, 0] for m in models}
    for row in rows:
        if row["student_model"] in totals:
            totals[row["student_model"]][0] += bool(row["verdict"])
            totals[row["student_model"]][1] += 1
    return {m: (c, n) for m, (c, n) in totals.items()}
