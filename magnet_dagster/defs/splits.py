"""Stage 6, `training_splits`: dedup, split by path, export SFT and preference files.

Writes `splits` and `$MAGNET_HOME/exports/<tool_set>/` (`sft.jsonl`, `sft.parquet`,
`preference.jsonl`, `preference.parquet`, `dataset_card.md`, and the card's plots as PNG).
The metadata links every file and the lineage DB. Checks beside it, each on
this run's partition only: no path in two splits, no hint text in exported conversations,
every exported call offered and valid against its schema.
"""

from collections import Counter
from pathlib import Path

import dagster as dg

from magnet_dagster import config
from magnet_dagster.defs.common import check_partitions, images, table, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource
from magnet_dagster.previews import percent, shorten, spread
from magnet_dagster.store.loaders import load_specs
from magnet_dagster.synthesis.export import ExportOutcome, export_partition, exported_problems, read_jsonl
from magnet_dagster.synthesis.inputs import load_export_sources, load_options
from magnet_dagster.synthesis.splits import SPLITS, SplitAssignment, SplitSettings, leaked_paths, split_rows


@dg.asset(partitions_def=tool_sets, group_name="magnet_pipeline", deps=["trajectories"], kinds={"duckdb", "parquet"})
def training_splits(context: dg.AssetExecutionContext, lineage: LineageStoreResource) -> dg.MaterializeResult:
    """Train / validation / test by path, and the files a trainer loads."""
    key, store = context.partition_key, lineage.get()
    options = load_options(store, key)
    assignment = split_rows(
        store.rows("trajectories", key, "trajectory_id"),
        SplitSettings(options.split_fractions, options.seed),
        key,
        context.run.run_id,
    )
    store.replace_partition(key, {"splits": assignment.rows})
    outcome = export_partition(config.exports_dir(key), key, assignment, load_export_sources(store, key))
    context.log.info(
        f"{key}: {len(outcome.sft)} SFT rows {split_sizes(assignment.rows)}, {len(outcome.preference)} preference "
        f"rows -> {outcome.directory}"
    )
    return dg.MaterializeResult(metadata=splits_metadata(outcome, assignment, store.path))


def split_sizes(rows: list[dict]) -> dict[str, int]:
    return {s: sum(1 for r in rows if r["split"] == s) for s in SPLITS}


def splits_metadata(outcome: ExportOutcome, assignment: SplitAssignment, lineage_db: Path) -> dict:
    """Funnel line (trajectories -> exported conversations by split) first, links to every file,
    the yield funnel and the conversation plots, the mixes, and a preview across splits and shapes."""
    rows, sizes = assignment.rows, split_sizes(assignment.rows)
    trajectories = len(assignment.kept) + assignment.duplicates
    pairs_per_split = Counter(p["split"] for p in outcome.preference)
    dependency = outcome.stats.get("dependency_rate", {})
    preview = [
        {
            "split, shape": f"{r['split']}, {outcome.shape_of.get(r['path_id'], '-')}",
            "user turns": sum(1 for m in r["messages"] if m["role"] == "user"),
            "first query": shorten(next((m["content"] for m in r["messages"] if m["role"] == "user"), ""), 120),
        }
        for r in outcome.sft
    ]
    files = {k: v for k, v in outcome.files.items() if v.exists()}
    return {
        "funnel": f"{len(outcome.sft)} of {trajectories} trajectories exported "
        f"({percent(len(outcome.sft), trajectories)}; {assignment.duplicates} duplicates removed): "
        + ", ".join(f"{s} {n}" for s, n in sizes.items()),
        "dagster/row_count": len(outcome.sft),
        "sft_rows": len(outcome.sft),
        "preference_rows": len(outcome.preference),
        "duplicates_removed": assignment.duplicates,
        "exports": dg.MetadataValue.path(str(outcome.directory)),
        **{key: dg.MetadataValue.path(str(path)) for key, path in files.items()},
        "lineage_db": dg.MetadataValue.path(str(lineage_db)),
        "splits": table(
            [
                {"split": s, "conversations": n, "share": percent(n, len(rows)), "preference pairs": pairs_per_split[s]}
                for s, n in sizes.items()
            ]
        ),
        "shape_mix": table(
            [
                {"shape": k, "paths": p, "conversations": c, "exported": percent(c, p)}
                for k, (p, c) in sorted(outcome.shapes.items(), key=lambda kv: -kv[1][0])
            ]
        ),
        "dependency_rate": (
            f"{dependency.get('rate', 'n/a')} ({dependency.get('from_earlier_outputs', 0)} of "
            f"{dependency.get('calls', 0)} calls take a value an earlier call returned)"
        ),
        "yield_funnel": images(outcome.plots["yield_funnel"]),
        "distributions": images(outcome.plots["turns_per_conversation"], outcome.plots["calls_per_turn"]),
        "preview": table(spread(preview, lambda r: r["split, shape"], limit=12), width=120),
    }


@dg.asset_check(
    asset=training_splits, blocking=True, description="No path appears in two splits (this run's partition only)."
)
def no_split_leakage(context: dg.AssetCheckExecutionContext, lineage: LineageStoreResource) -> dg.AssetCheckResult:
    store = lineage.get()
    leaked = [p for key in check_partitions(context, store) for p in leaked_paths(store.rows("splits", key))]
    return dg.AssetCheckResult(passed=not leaked, metadata={"leaked_paths": len(leaked)})


@dg.asset_check(
    asset=training_splits,
    blocking=True,
    description="Exported conversations hold no hint text and only offered, schema-valid calls "
    "(this run's partition only).",
)
def exports_are_clean(context: dg.AssetCheckExecutionContext, lineage: LineageStoreResource) -> dg.AssetCheckResult:
    store = lineage.get()
    problems = [
        f"{key}/{p}"
        for key in check_partitions(context, store)
        for p in exported_problems(read_jsonl(config.exports_dir(key) / "sft.jsonl"), load_specs(store, key))
    ]
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": len(problems), "examples": "\n".join(problems[:10]) or "none"},
    )
