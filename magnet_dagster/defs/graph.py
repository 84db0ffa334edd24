"""Stage 2, `function_graph`: candidate pairs, judged by the teacher, as a directed graph.

Writes `graph_edges` (every verdict, `none` included, with the parameter mapping, whether the
target is a nested call on the source's output, the candidate score and the judging LLM call).
One teacher call per function judges all its candidates; the calls are independent, so in
batch mode (`MAGNET_TEACHER_BATCH`) one batch job answers them first.
"""

from collections import Counter

import dagster as dg
import networkx as nx

from magnet_dagster.defs.common import Progress, counts_table, images, run_with_llm, table, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.figures import degree_plot, graph_plot
from magnet_dagster.graph.function_graph import build_graph, graph_stats, stored_mapping
from magnet_dagster.graph.judge import GraphJudgement, judge_graph
from magnet_dagster.previews import funnel, spread
from magnet_dagster.store.loaders import load_specs
from magnet_dagster.synthesis.inputs import load_options
from magnet_dagster.tools.spec import FunctionSpec


@dg.asset(
    partitions_def=tool_sets, group_name="magnet_pipeline", deps=["function_catalog"], kinds={"duckdb"}, pool="teacher"
)
def function_graph(
    context: dg.AssetExecutionContext, lineage: LineageStoreResource, teacher: LLMResource
) -> dg.MaterializeResult:
    """Edges f_i -> f_j where f_i's output can feed f_j (full / partial / prerequisite)."""
    key, store = context.partition_key, lineage.get()
    options, specs = load_options(store, key), load_specs(store, key)
    progress = Progress(context, len(specs), "functions judged")
    judged, llm_meta = run_with_llm(
        context,
        teacher.client(store, context),
        lambda client: judge_graph(
            client,
            specs,
            key,
            context.run.run_id,
            options.candidates_per_function,
            prefetch=teacher.prefetcher(client),
            tick=progress.tick,
        ),
        options.max_llm_failure_rate,
    )
    store.replace_partition(
        key, {"graph_edges": [{k: v for k, v in e.items() if k not in ("source", "target")} for e in judged.edges]}
    )
    context.log.info(f"{key}: {judged.candidate_pairs} candidate pairs, {len(judged.edges)} judged")
    return dg.MaterializeResult(metadata=graph_metadata(judged, build_graph(specs, judged.edges), specs) | llm_meta)


def graph_metadata(judged: GraphJudgement, graph: nx.DiGraph, specs: dict[str, FunctionSpec]) -> dict:
    """Funnel line (judged pairs -> walkable edges) first, the graph drawn, verdicts and a
    preview across verdicts; the row count counts walkable edges."""
    stats = graph_stats(graph)
    edges = judged.edges
    unjudged = judged.candidate_pairs - len(edges)
    funnel_line = funnel(stats["edges"], len(edges), "judged pairs became edges")
    if unjudged:
        funnel_line += f"; {unjudged} of {judged.candidate_pairs} candidate pairs left unjudged (failed calls)"
    rows = [
        {
            "edge": f"{e['source']} → {e['target']}",
            "relation": e["relation"],
            "why": (_feeds(e) + ("nested call; " if e.get("nested") else "")).removesuffix("; ") or "—",
        }
        for e in edges
    ]
    return {
        "funnel": funnel_line,
        "dagster/row_count": stats["edges"],
        "edges": stats["edges"],
        "judged_pairs": len(edges),
        "candidate_pairs": judged.candidate_pairs,
        "unjudged_pairs": unjudged,
        "graph": (
            f"{stats['nodes']} functions, {stats['edges']} edges; mean out-degree {stats['mean_out_degree']}; "
            f"{stats['isolated_nodes']} isolated; {stats['weak_components']} weak components, "
            f"the largest {stats['largest_component']} functions"
        ),
        "verdicts": counts_table(Counter(e["relation"] for e in edges), "relation", "pairs"),
        "nested_pairs": sum(bool(e.get("nested")) for e in edges),
        "graph_plot": images(graph_plot(graph, {n: s.category or "-" for n, s in specs.items()})),
        "degree_histogram": images(degree_plot(graph)),
        "preview": table(
            spread(rows, lambda r: r["relation"], limit=12, within=lambda r: r["edge"].split(" → ")[0]), width=160
        ),
        **judged.batch,
    }


def _feeds(edge: dict) -> str:
    """The edge's parameter mapping as `feeds a ← result, b ← result; ` (nothing without one)."""
    mapping = stored_mapping(edge.get("mapping"))
    return "feeds " + ", ".join(f"{p} ← {f}" for p, f in mapping.items()) + "; " if mapping else ""
