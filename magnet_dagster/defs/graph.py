"""Stage 2, `function_graph`: candidate pairs, judged by the teacher, as a directed graph.

Writes `graph_edges` (every verdict, `none` included, with reason, candidate score and
the judging LLM call). One teacher call per function judges all its candidates; the calls
are independent, so in batch mode (`MAGNET_TEACHER_BATCH`) one batch job answers them first.
"""

from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import Progress, md_table, run_with_llm, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.graph.function_graph import build_graph, graph_stats, mermaid
from magnet_dagster.graph.judge import GraphJudgement, judge_graph
from magnet_dagster.store.loaders import load_options, load_specs


@dg.asset(partitions_def=tool_sets, group_name="graph", deps=["function_catalog"], kinds={"duckdb"}, pool="teacher")
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
    return dg.MaterializeResult(metadata=graph_metadata(judged, build_graph(specs, judged.edges)) | llm_meta)


def graph_metadata(judged: GraphJudgement, graph) -> dict:
    stats = graph_stats(graph)
    edges = judged.edges
    return {
        "dagster/row_count": len(edges),
        "candidate_pairs": judged.candidate_pairs,
        "judged_pairs": len(edges),
        "unjudged_pairs": judged.candidate_pairs - len(edges),
        "walkable_edges": stats["edges"],
        "verdicts": dg.MetadataValue.json(dict(Counter(e["relation"] for e in edges))),
        "stats": dg.MetadataValue.json(stats),
        "graph": dg.MetadataValue.md(f"```mermaid\n{mermaid(graph)}\n```"),
        "preview": dg.MetadataValue.md(
            md_table([{k: e[k] for k in ("source", "target", "relation", "reason")} for e in edges])
        ),
        **judged.batch,
    }
