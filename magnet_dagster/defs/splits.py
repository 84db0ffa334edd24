"""Stage 6, `training_splits`: dedup, split by path, export SFT and preference files.

Writes `splits` and `$MAGNET_HOME/exports/<tool_set>/` (`sft.jsonl`, `sft.parquet`,
`preference.jsonl`, `preference.parquet`, `dataset_card.md`). Checks beside it, each on
this run's partition only: no path in two splits, no hint text in exported conversations,
every exported call offered and valid against its schema.
"""

import dagster as dg

from magnet_dagster import config
from magnet_dagster.defs.common import check_partitions, md_table, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource
from magnet_dagster.store.counts import partition_counts
from magnet_dagster.store.loaders import load_options, load_specs
from magnet_dagster.synthesis.export import ExportOutcome, export_partition, exported_problems, read_jsonl
from magnet_dagster.synthesis.splits import SPLITS, SplitSettings, leaked_paths, split_rows


@dg.asset(partitions_def=tool_sets, group_name="splits", deps=["trajectories"], kinds={"duckdb", "parquet"})
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
    outcome = export_partition(
        config.exports_dir(key),
        key,
        assignment,
        store.rows("preference_pairs", key, "pair_id"),
        store.rows("paths", key),
        partition_counts(store, key),
    )
    rows = assignment.rows
    per_split = {s: sum(1 for r in rows if r["split"] == s) for s in SPLITS}
    context.log.info(
        f"{key}: {len(outcome.sft)} SFT rows {per_split}, {len(outcome.preference)} preference rows "
        f"-> {outcome.directory}"
    )
    return dg.MaterializeResult(metadata=splits_metadata(outcome, rows, per_split, assignment.duplicates))


def splits_metadata(outcome: ExportOutcome, rows: list[dict], per_split: dict[str, int], duplicates: int) -> dict:
    return {
        "dagster/row_count": len(outcome.sft),
        "sft_rows": len(outcome.sft),
        "preference_rows": len(outcome.preference),
        "duplicates_removed": duplicates,
        "splits": dg.MetadataValue.json(per_split),
        "shape_mix": dg.MetadataValue.json(
            {k: {"paths": p, "conversations": c} for k, (p, c) in outcome.shapes.items()}
        ),
        "dependency_rate": outcome.stats.get("dependency_rate", {}).get("rate", "n/a"),
        "distributions": dg.MetadataValue.md(
            md_table(
                [
                    {"what": k.replace("_", " "), "histogram": ", ".join(f"{a}: {b}" for a, b in v.items())}
                    for k, v in outcome.stats.items()
                ]
            )
        ),
        "exports": dg.MetadataValue.path(str(outcome.directory)),
        "dataset_card": dg.MetadataValue.md(outcome.card),
        "preview": dg.MetadataValue.md(
            md_table(
                [{"trajectory_id": r["trajectory_id"], "split": r["split"], "path_id": r["path_id"]} for r in rows]
            )
        ),
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
        passed=not problems, metadata={"problems": len(problems), "examples": dg.MetadataValue.json(problems[:10])}
    )
