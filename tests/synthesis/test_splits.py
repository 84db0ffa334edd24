"""Dedup and path-level splits: no path in two splits, evaluation always has a test row."""

from hypothesis import given
from hypothesis import strategies as st

from magnet_dagster.synthesis.splits import SplitSettings, assign_splits, deduplicate, leaked_paths


def _traj(tid: str, path: str, query: str) -> dict:
    return {"trajectory_id": tid, "path_id": path, "messages": [
        {"role": "user", "content": query},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]}]}


def test_dedup_normalises_case_and_spacing():
    kept, removed = deduplicate([_traj("1", "p1", "Add 1 and 2"), _traj("2", "p2", "add  1 and 2 "),
                                 _traj("3", "p3", "add 3 and 4")])
    assert removed == 1 and [k["trajectory_id"] for k in kept] == ["1", "3"]


@given(st.lists(st.text(min_size=1, max_size=5), max_size=40), st.integers(0, 100))
def test_every_path_gets_exactly_one_split(paths, seed):
    assignment = assign_splits(paths, SplitSettings(seed=seed))
    assert set(assignment) == set(paths)
    rows = [{"path_id": p, "split": assignment[p]} for p in paths]
    assert leaked_paths(rows) == []
    if len(set(paths)) >= 3:
        assert {"test", "validation"} <= set(assignment.values())


def test_leakage_is_detected():
    rows = [{"path_id": "p", "split": "train"}, {"path_id": "p", "split": "test"}]
    assert leaked_paths(rows) == ["p"]
