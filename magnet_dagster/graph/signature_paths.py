"""The `signature_paths` stage: walks over the graph, Merge, Insert, Split, then the
single-turn shapes of the tool set's mix.

Pure and seeded, so a rerun gives the same paths and costs no LLM call: Insert uses the
nested-call verdicts the graph judge gave with each data edge (`nested`), where Insert could
use one (data edges out of a turn's last function, to a function the path does not use yet).
Split's `miss_params` leaves out only a parameter that the edges' parameter mappings and the
earlier functions' outputs cannot supply.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import networkx as nx

from magnet_dagster.graph.function_graph import build_graph, edge_mappings, output_fields
from magnet_dagster.graph.paths import (
    SignaturePath,
    initial_path,
    insert,
    merge,
    nested_index,
    random_walk,
    shape_counts,
    single_turn_paths,
    split,
)
from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.tools.spec import FunctionSpec, stable_id


@dataclass
class PathsOutcome:
    rows: list[dict[str, Any]]
    paths: list[SignaturePath]
    graph: nx.DiGraph
    #: of the pairs Insert could use (`insert_candidates`), those the graph judge found nested
    nested_pairs: int
    judged_pairs: int


def walks(graph: nx.DiGraph, options: SynthesisOptions) -> list[list[str]]:
    """`walks_per_node` seeded random walks from every node (none when the mix has no multi-turn share)."""
    if options.mix.get("multi_turn", 0.0) <= 0:
        return []
    return [
        random_walk(graph, start, options.walk_steps, random.Random(f"{options.seed}:{start}:{w}"))
        for start in sorted(graph.nodes)
        for w in range(options.walks_per_node)
    ]


def insert_candidates(graph: nx.DiGraph, paths: list[SignaturePath]) -> list[tuple[str, str]]:
    """(last function of a turn, a data-edge successor the path does not use yet): where Insert may nest."""
    return sorted(
        {
            (turn.functions[-1], t)
            for path in paths
            for turn in path.turns
            for t in graph.successors(turn.functions[-1])
            if graph.edges[turn.functions[-1], t]["relation"] in ("full", "partial") and t not in path.functions
        }
    )


def synthesize_paths(
    specs: dict[str, FunctionSpec], edges: list[dict[str, Any]], options: SynthesisOptions, tool_set: str, run_id: str
) -> PathsOutcome:
    graph = build_graph(specs, edges)
    found = walks(graph, options)
    merged = [
        merge(initial_path(w), options.merge_p, random.Random(f"{options.seed}:merge:{i}")) for i, w in enumerate(found)
    ]
    pairs = insert_candidates(graph, merged)
    nested = [p for p in pairs if graph.edges[p]["nested"]]
    #: the graph judge's call that found each pair nested (the path's lineage)
    call_ids = {p: graph.edges[p]["llm_call_id"] for p in nested if graph.edges[p].get("llm_call_id")}
    required = {n: s.required for n, s in specs.items()}
    mappings = edge_mappings(edges)
    returns_fields = {n: set(output_fields(s.returns)) for n, s in specs.items()}
    function_ids = {n: s.function_id(tool_set) for n, s in specs.items()}
    nested_targets = nested_index(nested)
    rows, paths = [], []
    for i, (walk, path) in enumerate(zip(found, merged)):
        path = insert(path, nested_targets, options.insert_p, random.Random(f"{options.seed}:insert:{i}"))
        path = split(
            path,
            options.split_p,
            random.Random(f"{options.seed}:split:{i}"),
            required,
            mappings=mappings,
            returns_fields=returns_fields,
        )
        edge_ids = [graph.edges[a, b]["edge_id"] for a, b in itertools.pairwise(walk)]
        nested_call_ids = list(dict.fromkeys(call_ids[p] for t in path.turns for p in t.nested if p in call_ids))
        paths.append(path)
        rows.append(
            path.as_row(tool_set, run_id, stable_id(tool_set, i, walk), function_ids, edge_ids, nested_call_ids)
        )
    counts = shape_counts(options.mix, len(paths), len(specs))
    for i, path in enumerate(single_turn_paths(counts, required, random.Random(f"{options.seed}:shapes"))):
        paths.append(path)
        rows.append(path.as_row(tool_set, run_id, stable_id(tool_set, path.shape, i, path.walk), function_ids, [], []))
    return PathsOutcome(rows, paths, graph, len(nested), len(pairs))
