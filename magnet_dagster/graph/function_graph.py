"""The function graph as a networkx DiGraph, and the numbers a user wants to see about it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import networkx as nx

#: Relations that make an edge walkable (`none` verdicts are stored but not walked).
WALKABLE = frozenset({"full", "partial", "prerequisite"})


def build_graph(functions: Iterable[str], edges: Iterable[dict[str, Any]]) -> nx.DiGraph:
    """Nodes are function names; edges carry `relation`, `reason` and `edge_id`."""
    graph = nx.DiGraph()
    graph.add_nodes_from(functions)
    for e in edges:
        if e["relation"] in WALKABLE:
            graph.add_edge(
                e["source"], e["target"], relation=e["relation"], reason=e.get("reason"), edge_id=e.get("edge_id")
            )
    return graph


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


def mermaid(graph: nx.DiGraph, max_edges: int = 60) -> str:
    """A Mermaid flowchart of the largest weak component (the UI renders it in Markdown)."""
    if graph.number_of_nodes() == 0:
        return "graph LR\n  empty[no functions]"
    largest = max(nx.weakly_connected_components(graph), key=len)
    sub = graph.subgraph(largest)
    lines = ["graph LR"]
    for i, (s, t, rel) in enumerate(sorted(sub.edges(data="relation"))):
        if i >= max_edges:
            lines.append(f"  more[... {sub.number_of_edges() - max_edges} more edges]")
            break
        arrow = "-.->" if rel == "prerequisite" else "-->"
        lines.append(f"  {s}{arrow}|{rel}|{t}")
    if len(lines) == 1:
        lines.append(f"  {next(iter(largest))}")
    return "\n".join(lines)
