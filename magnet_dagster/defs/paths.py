"""Stage 3, `signature_paths`: random walks over the graph, then Merge, Insert and Split.

Writes `paths` (walk, edges walked, turns after the operations, operations applied, shape,
and the nested-call judge's LLM calls). Besides the multi-turn walks, single-turn examples
(single, parallel, multiple, irrelevance) in the tool set's `mix`. Seeded: a rerun gives
the same paths. The nested-call judge's requests are independent, so batch mode sends them
as one Vertex batch job first.
"""

from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import md_table, run_with_llm, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.graph.paths import operation_mix
from magnet_dagster.graph.signature_paths import PathsOutcome, synthesize_paths
from magnet_dagster.store.loaders import load_edges, load_options, load_specs


@dg.asset(partitions_def=tool_sets, group_name="paths", deps=["function_graph"], kinds={"duckdb"}, pool="teacher")
def signature_paths(
    context: dg.AssetExecutionContext, lineage: LineageStoreResource, teacher: LLMResource
) -> dg.MaterializeResult:
    """One signature path per walk: turns of functions, with the operations that shaped them."""
    key, store = context.partition_key, lineage.get()
    options, specs, edges = load_options(store, key), load_specs(store, key), load_edges(store, key)
    outcome, llm_meta = run_with_llm(
        context,
        teacher.client(store, context),
        lambda client: synthesize_paths(
            client, specs, edges, options, key, context.run.run_id, prefetch=teacher.prefetcher(client)
        ),
        options.max_llm_failure_rate,
    )
    store.replace_partition(key, {"paths": outcome.rows})
    context.log.info(
        f"{key}: {len(outcome.paths)} paths from {outcome.graph.number_of_nodes()} start nodes; "
        f"{outcome.nested_pairs}/{outcome.judged_pairs} pairs judged nested"
    )
    return dg.MaterializeResult(metadata=paths_metadata(outcome) | llm_meta)


def paths_metadata(outcome: PathsOutcome) -> dict:
    rows, paths = outcome.rows, outcome.paths
    return {
        "dagster/row_count": len(rows),
        "paths": len(rows),
        "nested_pairs": outcome.nested_pairs,
        "judged_pairs": outcome.judged_pairs,
        "operation_mix": dg.MetadataValue.json(operation_mix(paths)),
        "shape_mix": dg.MetadataValue.json(dict(Counter(p.shape for p in paths))),
        "turns_per_path": dg.MetadataValue.json(
            {str(k): v for k, v in sorted(Counter(len(p.turns) for p in paths).items())}
        ),
        "preview": dg.MetadataValue.md(
            md_table(
                [
                    {
                        "path_id": r["path_id"],
                        "shape": r["shape"],
                        "operations": ", ".join(r["operations"]),
                        "turns": " | ".join("+".join(t["functions"]) or t["kind"] for t in r["turns"]),
                    }
                    for r in rows
                ]
            )
        ),
        **outcome.batch,
    }
