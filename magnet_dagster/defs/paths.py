"""Stage 3, `signature_paths`: random walks over the graph, then Merge, Insert and Split.

Writes `paths` (walk, edges walked, turns after the operations, operations applied, shape,
and the graph judge's calls whose `nested` verdicts Insert used). Besides the multi-turn walks,
single-turn examples (single, parallel, multiple, irrelevance) in the tool set's `mix`. Seeded
and without LLM calls: a rerun gives the same paths.
"""

from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import counts_table, images, table, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource
from magnet_dagster.figures import histogram_plot, mix_plot
from magnet_dagster.graph.paths import MULTI_TURN, operation_mix
from magnet_dagster.graph.signature_paths import PathsOutcome, synthesize_paths
from magnet_dagster.previews import funnel, percent, spread
from magnet_dagster.store.loaders import load_edges, load_specs
from magnet_dagster.synthesis.inputs import load_options


@dg.asset(partitions_def=tool_sets, group_name="magnet_pipeline", deps=["function_graph"], kinds={"duckdb"})
def signature_paths(context: dg.AssetExecutionContext, lineage: LineageStoreResource) -> dg.MaterializeResult:
    """One signature path per walk: turns of functions, with the operations that shaped them."""
    key, store = context.partition_key, lineage.get()
    options, specs, edges = load_options(store, key), load_specs(store, key), load_edges(store, key)
    outcome = synthesize_paths(specs, edges, options, key, context.run.run_id)
    store.replace_partition(key, {"paths": outcome.rows})
    context.log.info(
        f"{key}: {len(outcome.paths)} paths from {outcome.graph.number_of_nodes()} start nodes; "
        f"{outcome.nested_pairs}/{outcome.judged_pairs} pairs judged nested"
    )
    return dg.MaterializeResult(metadata=paths_metadata(outcome))


def paths_metadata(outcome: PathsOutcome) -> dict:
    """Funnel line first, then the shape and operation mix and turns per path (tables and a
    plot), and a preview across shapes and operations."""
    rows, paths = outcome.rows, outcome.paths
    shapes = Counter(p.shape for p in paths)
    operations = operation_mix(paths)
    walked = shapes.get(MULTI_TURN, 0)
    turns = Counter(len(p.turns) for p in paths)
    preview = [
        {
            "shape": r["shape"],
            "operations": ", ".join(r["operations"]) or "—",
            "turns": " → ".join(" + ".join(t["functions"]) or f"({t['kind']})" for t in r["turns"]),
        }
        for r in rows
    ]
    return {
        "funnel": (
            f"{len(rows)} signature paths ({walked} multi-turn walks, {len(rows) - walked} single-turn examples); "
            + funnel(outcome.nested_pairs, outcome.judged_pairs, "pairs Insert could use judged nested")
        ),
        "dagster/row_count": len(rows),
        "paths": len(rows),
        "nested_pairs": outcome.nested_pairs,
        "judged_pairs": outcome.judged_pairs,
        "shape_mix": counts_table(shapes, "shape", "paths"),
        "operation_mix": table(
            [
                {"operation": op, "paths": n, "share of paths": percent(n, len(paths))}
                for op, n in sorted(operations.items(), key=lambda kv: -kv[1])
            ]
        ),
        "turns_per_path": table(
            [{"turns": k, "paths": v, "share": percent(v, len(paths))} for k, v in sorted(turns.items())]
        ),
        "mix_plot": images(
            mix_plot(operations, dict(shapes), len(paths)),
            histogram_plot("turns_per_path", "Turns per path", turns, "turns", "paths"),
        ),
        "preview": table(spread(preview, lambda r: r["shape"], limit=12, within=lambda r: r["operations"]), width=200),
    }
