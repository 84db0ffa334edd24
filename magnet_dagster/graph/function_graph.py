"""The function graph as a networkx DiGraph, and the numbers a user wants to see about it.

An edge's `mapping` says which output field of the source feeds which parameter of the
target: `{target parameter: source output field}`, where the field is a top-level property
of the source's `returns` schema, or `$` (the whole output) when that schema has none.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import networkx as nx

#: Relations that make an edge walkable (`none` verdicts are stored but not walked).
WALKABLE = frozenset({"full", "partial", "prerequisite"})
#: Relations whose edges pass data, so they may carry a parameter mapping.
DATA_RELATIONS = frozenset({"full", "partial"})
#: The mapping value that stands for the source's whole output.
WHOLE_OUTPUT = "$"


def output_fields(returns: dict[str, Any] | None) -> list[str]:
    """The top-level fields of a `returns` schema, in schema order ([] unless an object with properties)."""
    if not isinstance(returns, dict):
        return []
    kind = returns.get("type", "object")
    if kind != "object" and not (isinstance(kind, list) and "object" in kind):
        return []
    props = returns.get("properties")
    return [str(k) for k in props] if isinstance(props, dict) else []


def mapping_sources(returns: dict[str, Any] | None) -> list[str]:
    """What a mapping may name as the source of a parameter: the top-level output fields,
    or only `$` (the whole output) when the output has none."""
    return output_fields(returns) or [WHOLE_OUTPUT]


def _types(schema: Any) -> set[str]:
    """A schema's JSON types (empty: unknown)."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, str):
        return {kind}
    return {k for k in kind if isinstance(k, str)} if isinstance(kind, list) else set()


def feeding_sources(returns: dict[str, Any] | None, parameter: Any) -> list[str]:
    """The `mapping_sources` whose type fits a parameter's schema (an unknown type fits anything):
    an integer field feeds a number parameter, a number field never an integer one."""
    wanted = _types(parameter)
    props = returns.get("properties") if isinstance(returns, dict) and output_fields(returns) else None
    out = []
    for source in mapping_sources(returns):
        given = _types(props.get(source) if isinstance(props, dict) else returns)
        if "integer" in given:
            given.add("number")
        if not wanted or not given or wanted & given:
            out.append(source)
    return out


def stored_mapping(value: Any) -> dict[str, str]:
    """An edge's `mapping` as stored or judged (a dict, or its JSON text), `{}` when unreadable."""
    if isinstance(value, str):  # a JSON column read without decoding
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def build_graph(functions: Iterable[str], edges: Iterable[dict[str, Any]]) -> nx.DiGraph:
    """Nodes are function names; edges carry `relation`, `reason`, `edge_id`, `mapping`
    (`{target parameter: source output field}`, `{}` when the judge gave none), `nested` and
    the judging call (`llm_call_id`)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(functions)
    for e in edges:
        if e["relation"] in WALKABLE:
            graph.add_edge(
                e["source"],
                e["target"],
                relation=e["relation"],
                reason=e.get("reason"),
                edge_id=e.get("edge_id"),
                mapping=stored_mapping(e.get("mapping")),
                nested=bool(e.get("nested")) and e["relation"] in DATA_RELATIONS,
                llm_call_id=e.get("llm_call_id"),
            )
    return graph


def edge_mappings(edges: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """(source name, target name) -> `{target parameter: source output field}`, for the data
    edges (`full` / `partial`) whose judge named at least one fed parameter."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for e in edges:
        mapping = stored_mapping(e.get("mapping")) if e.get("relation") in DATA_RELATIONS else {}
        if mapping:
            out[(e["source"], e["target"])] = mapping
    return out


def graph_stats(graph: nx.DiGraph) -> dict[str, Any]:
    out_degrees = [d for _, d in graph.out_degree()]
    components = sorted((len(c) for c in nx.weakly_connected_components(graph)), reverse=True)
    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "edges_by_relation": dict(Counter(r for _, _, r in graph.edges(data="relation"))),
        "out_degree_histogram": dict(sorted(Counter(out_degrees).items())),
        "mean_out_degree": round(sum(out_degrees) / len(out_degrees), 2) if out_degrees else 0.0,
        "isolated_nodes": sum(1 for n in graph if graph.degree(n) == 0),
        "weak_components": len(components),
        "largest_component": components[0] if components else 0,
    }
