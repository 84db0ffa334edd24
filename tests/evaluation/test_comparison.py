"""Before/after tables: every rate shows what it is a rate of, per tool set, mode, kind and category."""

from magnet_dagster.evaluation.comparison import overall, side_by_side


def _row(model: str, verdict: bool, kind: str = "call", tool_set: str = "demo", mode: str = "teacher_forced",
         categories: tuple[str, ...] = ("math",)) -> dict:
    return {"student_model": model, "verdict": verdict, "kind": kind, "tool_set": tool_set, "mode": mode,
            "categories": list(categories)}


ROWS = [
    _row("base@1", False), _row("base@1", True, kind="miss_params", categories=()),
    _row("trained@2", True), _row("trained@2", True, kind="miss_params", categories=()),
    _row("base@1", False, kind="multi_turn_base", tool_set="bfcl", mode="bfcl_multi_turn", categories=()),
    _row("trained@2", True, kind="multi_turn_base", tool_set="bfcl", mode="bfcl_multi_turn", categories=()),
]  # fmt: skip


def test_side_by_side_counts_each_group_per_model():
    table = {(r["tool set"], r["mode"], r["group"]): r for r in side_by_side(ROWS, ["base@1", "trained@2"])}
    assert table[("demo", "teacher forced", "all")] == {
        "tool set": "demo", "mode": "teacher forced", "group": "all", "base@1": "1 of 2 (50%)",
        "trained@2": "2 of 2 (100%)",
    }  # fmt: skip
    assert table[("demo", "teacher forced", "kind: call")]["base@1"] == "0 of 1 (0%)"
    assert table[("demo", "teacher forced", "category: math")]["trained@2"] == "1 of 1 (100%)"
    # BFCL rows are entries; their kind is the category and no turn kind is invented for them
    assert table[("bfcl", "bfcl multi turn", "category: multi_turn_base")]["trained@2"] == "1 of 1 (100%)"
    assert ("bfcl", "bfcl multi turn", "kind: multi_turn_base") not in table


def test_tool_sets_come_before_bfcl_and_all_heads_each_scope():
    lines = side_by_side(ROWS, ["base@1", "trained@2"])
    assert [r["tool set"] for r in lines][-2:] == ["bfcl", "bfcl"]
    assert lines[0]["group"] == "all"


def test_a_model_without_rows_in_a_group_shows_a_dash():
    lines = side_by_side([_row("base@1", True)], ["base@1", "trained@2"])
    assert {r["trained@2"] for r in lines} == {"—"}


def test_overall_totals():
    assert overall(ROWS, ["base@1", "trained@2"]) == {"base@1": (1, 3), "trained@2": (3, 3)}
