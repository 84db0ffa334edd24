"""Random walks and the node operations, as properties over many seeds."""

import random

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from magnet_dagster.graph.paths import (
    MAX_FUNCTIONS_PER_TURN, MISS_FUNC, MISS_PARAMS, initial_path, insert, merge, nested_index, random_walk, split,
)


def _graph(n: int, edges: list[tuple[int, int]]) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(f"f{i}" for i in range(n))
    g.add_edges_from((f"f{a}", f"f{b}") for a, b in edges if a != b)
    return g


graphs = st.integers(2, 9).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=30)))


@given(graphs, st.integers(1, 8), st.integers(0, 10_000))
def test_walk_follows_edges_without_repeating_nodes(g_spec, steps, seed):
    g = _graph(*g_spec)
    walk = random_walk(g, "f0", steps, random.Random(seed))
    assert walk[0] == "f0" and len(walk) <= steps
    assert len(set(walk)) == len(walk)
    assert all(g.has_edge(a, b) for a, b in zip(walk, walk[1:]))
    if len(walk) < steps:  # stopped early only at a dead end
        assert all(n in walk for n in g.successors(walk[-1]))


def test_walk_is_reproducible_from_its_seed():
    g = _graph(6, [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (3, 5)])
    assert random_walk(g, "f0", 5, random.Random(3)) == random_walk(g, "f0", 5, random.Random(3))


@given(st.lists(st.sampled_from([f"f{i}" for i in range(10)]), min_size=1, max_size=7, unique=True),
       st.integers(0, 10_000))
def test_merge_keeps_functions_in_order_and_removes_one_turn_per_merge(walk, seed):
    path = initial_path(walk)
    merged = merge(path, 0.5, random.Random(seed))
    assert merged.functions == walk
    assert len(merged.turns) == len(path.turns) - merged.operations.count("merge")
    assert all(len(t.functions) <= MAX_FUNCTIONS_PER_TURN for t in merged.turns)


def test_merge_with_p_one_folds_adjacent_turns():
    merged = merge(initial_path(["a", "b", "c", "d"]), 1.0, random.Random(0))
    assert [t.functions for t in merged.turns] == [("a", "b", "c"), ("d",)]


@given(st.integers(0, 10_000))
def test_insert_adds_a_judged_nested_call_after_its_source(seed):
    path = initial_path(["a", "b", "c"])
    nested = {("a", "x"), ("b", "y"), ("c", "z")}
    out = insert(path, nested_index(nested), 1.0, random.Random(seed))
    added = [f for f in out.functions if f in "xyz"]
    assert len(added) == len([o for o in out.operations if o.startswith("insert")]) >= 1
    order = out.functions
    for turn in out.turns:
        for source, target in turn.nested:
            assert (source, target) in nested
            assert order.index(source) < order.index(target), "the nested call comes after its source"
    assert set(path.functions) <= set(out.functions)


def test_insert_never_uses_pairs_the_judge_rejected():
    out = insert(initial_path(["a", "b"]), {}, 1.0, random.Random(0))
    assert out == initial_path(["a", "b"])


@given(st.integers(0, 10_000))
def test_split_adds_one_labelled_empty_turn_before_a_call_turn(seed):
    path = initial_path(["a", "b", "c"])
    out = split(path, 1.0, random.Random(seed), {"a": ["x"], "b": [], "c": ["y"]})
    assert len(out.turns) == len(path.turns) + 1
    (i, empty), = [(i, t) for i, t in enumerate(out.turns) if not t.functions]
    assert empty.kind in (MISS_FUNC, MISS_PARAMS)
    assert out.operations[-1] == f"split_{empty.kind}"
    following = out.turns[i + 1]
    assert set(empty.target) <= set(following.functions)
    if empty.kind == MISS_PARAMS:
        assert empty.target[0] in ("a", "c"), "miss_params needs a required parameter to leave out"
