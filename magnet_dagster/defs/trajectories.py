"""Stage 5, `trajectories`: context distillation into positive conversations and negatives.

Writes `trajectories` (messages without any hint, tools, the teacher calls that wrote
them, the turns they came from), `preference_pairs` (turn-level, with error type) and
`path_rejections` (stage `trajectories`) for paths whose distilled turns failed.
"""

from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import (
    Progress,
    check_partitions,
    counts_table,
    rejections_table,
    run_with_llm,
    table,
    tool_sets,
)
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.previews import compact_calls, funnel, message_calls, percent, shorten, spread
from magnet_dagster.store.loaders import load_turns_by_path
from magnet_dagster.synthesis.distillation import DistillationOutcome, distill_paths
from magnet_dagster.synthesis.inputs import load_options, load_partition


@dg.asset(partitions_def=tool_sets, group_name="magnet_pipeline", deps=["queries"], kinds={"duckdb"}, pool="teacher")
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
    """Funnel line (paths with queries -> trajectories) first, drops, negatives by error type,
    and a preview across turn-kind sequences."""
    kept, pairs, rejections = outcome.trajectory_rows, outcome.pair_rows, outcome.rejection_rows
    preview = [
        {
            "turns": " → ".join(m.get("kind", "?") for m in t.get("turn_meta") or []) or "—",
            "first query, then every call": shorten(
                next((m["content"] for m in t["messages"] if m["role"] == "user"), ""), 100
            )
            + " ⟶ "
            + shorten(compact_calls(message_calls(t["messages"])), 120),
        }
        for t in kept
    ]
    return {
        "funnel": funnel(len(kept), outcome.paths_in, "paths distilled into trajectories")
        + f"; {len(pairs)} preference pairs",
        "dagster/row_count": len(kept),
        "paths_in": outcome.paths_in,
        "trajectories": len(kept),
        "preference_pairs": len(pairs),
        "yield": percent(len(kept), outcome.paths_in),
        "dropped_by_rule": counts_table(Counter(r["rule"] for r in rejections), "rule", "paths"),
        "error_types": counts_table(Counter(p["error_type"] for p in pairs), "error type", "pairs"),
        "rejections": rejections_table(rejections),
        "preview": table(spread(preview, lambda r: r["turns"], limit=12), width=160),
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
            "below_floor": "; ".join(f"{k}: {v}" for k, v in below.items()) or "none",
            "yield": "; ".join(f"{k}: {v:.1%}" for k, v in achieved.items()) or "no tool set",
        },
    )
