"""The paper's data mix: single-turn shapes beside the multi-turn walks, in configured shares."""

import random

import pytest

from magnet_dagster.graph.paths import (
    IRRELEVANCE, IRRELEVANT, MULTIPLE, PARALLEL, SINGLE, distractor_count, shape_counts, single_turn_paths,
)
from magnet_dagster.synthesis.options import DEFAULT_MIX, SynthesisOptions
from magnet_dagster.tools.spec import ToolSetError

REQUIRED = {"add": ["a", "b"], "list_tickets": [], "get_ticket": ["ticket_id"], "now": []}


def test_counts_follow_the_shares_relative_to_the_walks():
    assert shape_counts(DEFAULT_MIX, multi_turn_paths=30, functions=4) == \
        {SINGLE: 5, PARALLEL: 5, MULTIPLE: 5, IRRELEVANCE: 5}
    only_single = {"multi_turn": 0.0, "single": 0.5, "irrelevance": 0.5}
    assert shape_counts(only_single, multi_turn_paths=0, functions=4) == \
        {SINGLE: 2, PARALLEL: 0, MULTIPLE: 0, IRRELEVANCE: 2}


def test_each_shape_has_its_turn_form():
    paths = single_turn_paths({SINGLE: 2, PARALLEL: 3, MULTIPLE: 1, IRRELEVANCE: 2}, REQUIRED, random.Random(3))
    by_shape = {}
    for p in paths:
        by_shape.setdefault(p.shape, []).append(p)
        assert len(p.turns) == 1 and p.operations == ()
    assert {s: len(v) for s, v in by_shape.items()} == {SINGLE: 2, PARALLEL: 3, MULTIPLE: 1, IRRELEVANCE: 2}
    for p in by_shape[PARALLEL]:
        functions = p.turns[0].functions
        assert len(functions) in (2, 3) and len(set(functions)) == 1 and REQUIRED[functions[0]]
    for p in by_shape[IRRELEVANCE]:
        turn = p.turns[0]
        assert turn.kind == IRRELEVANT and turn.functions == () and turn.target[0] in REQUIRED
    assert len({p.turns[0].functions for p in by_shape[SINGLE]}) == 2, "round robin over the catalog"


def test_shapes_are_reproducible_from_the_seed():
    counts = {SINGLE: 3, PARALLEL: 3, MULTIPLE: 3, IRRELEVANCE: 3}
    assert single_turn_paths(counts, REQUIRED, random.Random(9)) == single_turn_paths(counts, REQUIRED, random.Random(9))


def test_distractors_per_shape():
    assert distractor_count(SINGLE, 2) == 0
    assert distractor_count(MULTIPLE, 0) == distractor_count(IRRELEVANCE, 1) == 2
    assert distractor_count("multi_turn", 1) == 1


@pytest.mark.parametrize("mix, message", [
    ({"single": 0.5, "multi_turn": 0.6}, "sum to 1"),
    ({"single": -0.2, "multi_turn": 1.2}, "non-negative"),
    ({"chit_chat": 1.0}, "mix must map some of"),
])
def test_bad_mix_is_refused_with_the_rule(mix, message):
    with pytest.raises(ToolSetError, match=message):
        SynthesisOptions.from_mapping({"mix": mix}, "ts/toolset.yaml")


def test_unnamed_shapes_get_zero():
    assert SynthesisOptions.from_mapping({"mix": {"multi_turn": 1}}).mix == \
        {"multi_turn": 1.0, "single": 0.0, "parallel": 0.0, "multiple": 0.0, "irrelevance": 0.0}
