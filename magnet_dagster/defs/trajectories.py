"""Stage 5, `trajectories`: context distillation into positive conversations and negatives.

Writes `trajectories` (messages without any hint, tools, the teacher calls that wrote
them, the turns they came from), `preference_pairs` (turn-level, with error type) and
`path_rejections` (stage `trajectories`) for paths whose distilled turns failed.
"""

from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import Progress, check_partitions, counts_table, md_table, run_with_llm, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.store.loaders import load_options, load_partition, load_turns_by_path
from magnet_dagster.synthesis.distillation import DistillationOutcome, distill_paths


@dg.asset(partitions_def=tool_sets, group_name="trajectories", deps=["queries"], kinds={"duckdb"}, pool="teacher")
def trajectories(
    context: dg.AssetExecutionContext, lineage: LineageStoreResource, teacher: LLMResource
) -> dg.MaterializeResult:
    """Positive multi-turn conversations, and turn-level preference pairs from wrong hints."""
    key, store = context.partition_key, lineage.get()
    partition, by_path = load_partition(store, key, context.run.run_id), load_turns_by_path(store, key)
    progress = Progress(context, len(by_path), "paths distilled")
    outcome, llm_meta = run_with_llm(
        context,
        teacher.client(store, context),
        lambda client: distill_paths(client, by_path, partition, tick=progress.tick),
        partition.options.max_llm_failure_rate,
    )
    store.replace_partition(
        key,
        {
            "trajectories": outcome.trajectory_rows,
            "preference_pairs": outcome.pair_rows,
            "path_rejections": outcome.rejection_rows,
        },
        stage="trajectories",
    )
    context.log.info(
        f"{key}: {len(outcome.trajectory_rows)}/{outcome.paths_in} trajectories kept, "
        f"{len(outcome.pair_rows)} preference pairs"
    )
    return dg.MaterializeResult(metadata=trajectories_metadata(outcome) | llm_meta)


def trajectories_metadata(outcome: DistillationOutcome) -> dict:
    kept, pairs, rejections = outcome.trajectory_rows, outcome.pair_rows, outcome.rejection_rows
    return {
        "dagster/row_count": len(kept),
        "paths_in": outcome.paths_in,
        "trajectories": len(kept),
        "preference_pairs": len(pairs),
        "yield": round(len(kept) / outcome.paths_in, 4) if outcome.paths_in else 0.0,
        "dropped_by_rule": dg.MetadataValue.md(counts_table(Counter(r["rule"] for r in rejections), "rule")),
        "error_types": dg.MetadataValue.json(dict(Counter(p["error_type"] for p in pairs))),
        "rejections": dg.MetadataValue.md(
            md_table([{k: r[k] for k in ("path_id", "turn_index", "rule", "reason")} for r in rejections], limit=20)
        ),
        "preview": dg.MetadataValue.md(
            md_table(
                [
                    {
                        "trajectory_id": t["trajectory_id"],
                        "messages": len(t["messages"]),
                        "first_query": next(m["content"] for m in t["messages"] if m["role"] == "user"),
                    }
                    for t in kept
                ]
            )
        ),
    }


@dg.asset_check(
    asset=trajectories,
    description="Trajectories per signature path stay above the tool set's `min_yield` (this run's partition only).",
)
def yield_above_floor(context: dg.AssetCheckExecutionContext, lineage: LineageStoreResource) -> dg.AssetCheckResult:
    store = lineage.get()
    below, achieved = {}, {}
    for key in check_partitions(context, store):
        paths, kept = store.count("paths", key), store.count("trajectories", key)
        achieved[key] = kept / paths if paths else 0.0
        floor = load_options(store, key).min_yield
        if achieved[key] < floor:
            below[key] = f"{achieved[key]:.1%} < {floor:.1%}"
    return dg.AssetCheckResult(
        passed=not below,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "below_floor": dg.MetadataValue.json(below),
            "yield": dg.MetadataValue.json({k: f"{v:.1%}" for k, v in achieved.items()}),
        },
    )
