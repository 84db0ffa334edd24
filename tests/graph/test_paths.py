"""Random walks and the node operations, as properties over many seeds."""

import itertools
import random

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from magnet_dagster.graph.paths import (
    CALL,
    MAX_FUNCTIONS_PER_TURN,
    MISS_FUNC,
    MISS_PARAMS,
    initial_path,
    insert,
    merge,
    nested_index,
    random_walk,
    split,
)


def _graph(n: int, edges: list[tuple[int, int]]) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(f"f{i}" for i in range(n))
    g.add_edges_from((f"f{a}", f"f{b}") for a, b in edges if a != b)
    return g


graphs = st.integers(2, 9).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=30))
)


@given(graphs, st.integers(1, 8), st.integers(0, 10_000))
def test_walk_follows_edges_without_repeating_nodes(g_spec, steps, seed):
    g = _graph(*g_spec)
    walk = random_walk(g, "f0", steps, random.Random(seed))
    assert walk[0] == "f0" and len(walk) <= steps
    assert len(set(walk)) == len(walk)
    assert all(g.has_edge(a, b) for a, b in itertools.pairwise(walk))
    if len(walk) < steps:  # stopped early only at a dead end
        assert all(n in walk for n in g.successors(walk[-1]))


def test_walk_is_reproducible_from_its_seed():
    g = _graph(6, [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (3, 5)])
    assert random_walk(g, "f0", 5, random.Random(3)) == random_walk(g, "f0", 5, random.Random(3))


@given(
    st.lists(st.sampled_from([f"f{i}" for i in range(10)]), min_size=1, max_size=7, unique=True), st.integers(0, 10_000)
)
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
    ((i, empty),) = [(i, t) for i, t in enumerate(out.turns) if not t.functions]
    assert empty.kind in (MISS_FUNC, MISS_PARAMS)
    assert out.operations[-1] == f"split_{empty.kind}"
    following = out.turns[i + 1]
    assert empty.target == following.functions
    if empty.kind == MISS_PARAMS:
        assert empty.target[0] in ("a", "c"), "miss_params needs a required parameter to leave out"


FUNCS = [f"f{i}" for i in range(8)]
PARAMS = ["id", "name", "count", "city", "date"]


@st.composite
def split_inputs(draw):
    """A walk after random Merge and Insert, with random required parameters, edge mappings and outputs."""
    walk = draw(st.lists(st.sampled_from(FUNCS[:6]), min_size=1, max_size=6, unique=True))
    rng = random.Random(draw(st.integers(0, 10_000)))
    nested = nested_index((a, b) for a in walk for b in FUNCS[6:] if draw(st.booleans()))
    path = insert(merge(initial_path(walk), 0.4, rng), nested, 0.5, rng)
    required = {f: draw(st.lists(st.sampled_from(PARAMS), max_size=3, unique=True)) for f in FUNCS}
    returns = {f: set(draw(st.lists(st.sampled_from(PARAMS), max_size=2, unique=True))) for f in FUNCS}
    mappings = {}
    for a in FUNCS:
        for b in FUNCS:
            fed = draw(st.lists(st.sampled_from(required[b] or ["unused"]), max_size=2, unique=True))
            if a != b and fed and draw(st.booleans()):
                mappings[(a, b)] = {p: "$" for p in fed}
    return path, required, mappings, returns


@settings(max_examples=300)
@given(split_inputs(), st.integers(0, 10_000))
def test_split_stands_only_before_single_non_nested_calls_and_drops_only_uninferable_values(inputs, seed):
    path, required, mappings, returns = inputs
    out = split(path, 1.0, random.Random(seed), required, mappings=mappings, returns_fields=returns)
    empties = [(i, t) for i, t in enumerate(out.turns) if t.kind != CALL]
    assert len(empties) <= 1
    if not empties:
        assert out == path
        return
    ((i, empty),) = empties
    assert [t for j, t in enumerate(out.turns) if j != i] == list(path.turns), "only the empty turn is new"
    following = out.turns[i + 1]
    assert following.kind == CALL and len(following.functions) == 1 and not following.nested
    assert empty.target == following.functions and not empty.functions
    (target,) = empty.target
    earlier = [f for t in out.turns[:i] for f in t.functions]
    if empty.kind == MISS_FUNC:
        assert empty.missing == () and target not in earlier
    else:
        assert empty.kind == MISS_PARAMS
        (param,) = empty.missing
        assert param in required[target]
        assert all(param not in mappings.get((f, target), {}) for f in earlier), "no earlier output feeds it"
        assert all(param not in returns[f] for f in earlier), "no earlier function returns it"


@given(split_inputs(), st.integers(0, 10_000))
def test_split_is_reproducible_from_its_seed(inputs, seed):
    path, required, mappings, returns = inputs
    once = split(path, 0.7, random.Random(seed), required, mappings=mappings, returns_fields=returns)
    again = split(path, 0.7, random.Random(seed), required, mappings=mappings, returns_fields=returns)
    assert once == again


@given(st.lists(st.sampled_from(FUNCS), min_size=2, max_size=6, unique=True), st.integers(0, 10_000), st.booleans())
def test_no_miss_params_when_every_required_value_comes_from_an_earlier_output(walk, seed, by_mapping):
    # the first function needs nothing; every later one needs only what the one before feeds or returns
    required = {f: ([] if i == 0 else [f"in_{f}", "shared"]) for i, f in enumerate(walk)}
    if by_mapping:
        mappings = {(a, b): {f"in_{b}": "$", "shared": "$"} for a, b in itertools.pairwise(walk)}
        returns = {}
    else:
        mappings = {}
        returns = {a: {f"in_{b}", "shared"} for a, b in itertools.pairwise(walk)}
    path = initial_path(walk)
    for p_seed in range(5):
        out = split(path, 1.0, random.Random(seed + p_seed), required, mappings=mappings, returns_fields=returns)
        assert all(t.kind != MISS_PARAMS for t in out.turns)
        assert [o for o in out.operations if o.startswith("split")] == ["split_miss_func"]


def test_a_mapping_from_an_earlier_turn_makes_only_that_parameter_inferable():
    path = initial_path(["a", "b"])
    required = {"a": [], "b": ["fed", "free"]}
    kinds = {}
    for seed in range(60):
        out = split(path, 1.0, random.Random(seed), required, mappings={("a", "b"): {"fed": "$"}})
        (empty,) = [t for t in out.turns if t.kind != CALL]
        kinds.setdefault(empty.kind, set()).add(empty.missing)
    assert kinds[MISS_PARAMS] == {("free",)} and kinds[MISS_FUNC] == {()}


def test_a_mapping_from_a_later_turn_does_not_count():
    path = initial_path(["b", "a"])
    out = [
        split(path, 1.0, random.Random(s), {"a": [], "b": ["x"]}, mappings={("a", "b"): {"x": "$"}}) for s in range(40)
    ]
    assert {t.missing for o in out for t in o.turns if t.kind == MISS_PARAMS} == {("x",)}


def test_split_never_precedes_merged_or_nested_turns():
    required = {f: ["x"] for f in "abcdefg"}
    merged = merge(initial_path(["a", "b", "c", "d"]), 1.0, random.Random(0))  # (a, b, c), (d,)
    for seed in range(30):
        out = split(merged, 1.0, random.Random(seed), required)
        (i,) = [i for i, t in enumerate(out.turns) if t.kind != CALL]
        assert out.turns[i + 1].functions == ("d",)
    short = insert(initial_path(["d"]), {"d": ["e"]}, 1.0, random.Random(0))
    assert short.turns[0].functions == ("d", "e") and short.turns[0].nested, "insert_short folds e into d's turn"
    assert split(short, 1.0, random.Random(0), required) == short
    long = next(
        p
        for s in range(50)
        if "insert_long" in (p := insert(initial_path(["f", "g"]), {"f": ["e"]}, 1.0, random.Random(s))).operations
    )
    assert [t.functions for t in long.turns] == [("f",), ("g",), ("e",)] and long.turns[2].nested
    for seed in range(30):
        out = split(long, 1.0, random.Random(seed), required)
        (i,) = [i for i, t in enumerate(out.turns) if t.kind != CALL]
        assert out.turns[i + 1].functions in (("f",), ("g",)), "never before the inserted nested turn"
