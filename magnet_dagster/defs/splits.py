"""Stage 6, `training_splits`: dedup, split by path, export SFT and preference files.

Writes `splits` and `$MAGNET_HOME/exports/<tool_set>/` (`sft.jsonl`, `sft.parquet`,
`preference.jsonl`, `preference.parquet`, `dataset_card.md`). Checks beside it: no path in
two splits, no hint text in exported conversations, every exported call valid against
its schema.
"""


import json
from collections import Counter
from typing import Any

import dagster as dg
import jsonschema

from magnet_dagster import config
from magnet_dagster.defs.common import md_table, options_for, tool_sets
from magnet_dagster.defs.paths import load_specs
from magnet_dagster.defs.resources import LineageStoreResource
from magnet_dagster.graph.paths import MULTI_TURN, SignaturePath, Turn, operation_mix
from magnet_dagster.store.counts import stage_counts, stage_yields
from magnet_dagster.synthesis.distillation import contains_hint
from magnet_dagster.synthesis.export import (
    conversation_stats, dataset_card, preference_row, sft_row, write_jsonl, write_parquet,
)
from magnet_dagster.synthesis.splits import SplitSettings, assign_splits, deduplicate, leaked_paths

@dg.asset(partitions_def=tool_sets, group_name="splits", deps=["trajectories"], kinds={"duckdb", "parquet"})
def training_splits(context: dg.AssetExecutionContext, lineage: LineageStoreResource) -> dg.MaterializeResult:
    """Train / validation / test by path, and the files a trainer loads."""
    key = context.partition_key
    store = lineage.get()
    options = options_for(store, key)
    trajectories = store.rows("trajectories", key, "trajectory_id")
    kept, duplicates = deduplicate(trajectories)
    assignment = assign_splits([t["path_id"] for t in kept], SplitSettings(options.split_fractions, options.seed))
    split_rows = [{"tool_set": key, "run_id": context.run.run_id, "trajectory_id": t["trajectory_id"],
                   "path_id": t["path_id"], "split": assignment[t["path_id"]]} for t in kept]
    store.replace_partition(key, {"splits": split_rows})
    split_of = {r["trajectory_id"]: r["split"] for r in split_rows}
    pairs = [p for p in store.rows("preference_pairs", key, "pair_id") if p["trajectory_id"] in split_of]

    out = config.exports_dir(key)
    sft = [sft_row(t, split_of[t["trajectory_id"]]) for t in kept]
    tools_of = {t["trajectory_id"]: t["tools"] for t in kept}
    pref = [preference_row(p, split_of[p["trajectory_id"]], tools=tools_of[p["trajectory_id"]]) for p in pairs]
    write_jsonl(out / "sft.jsonl", sft)
    write_jsonl(out / "preference.jsonl", pref)
    if sft:
        write_parquet(out / "sft.parquet", sft)
    if pref:
        write_parquet(out / "preference.parquet", pref)
    counts = stage_counts(store, key)
    yields = stage_yields(counts)
    path_rows = store.rows("paths", key)
    paths = [SignaturePath(tuple(p["walk"]), tuple(Turn.from_dict(t) for t in p["turns"]), tuple(p["operations"]),
                           p.get("shape") or MULTI_TURN) for p in path_rows]
    shape_of = {p["path_id"]: p.get("shape") or MULTI_TURN for p in path_rows}
    exported = Counter(shape_of.get(t["path_id"], MULTI_TURN) for t in kept)
    shapes = {shape: (n, exported[shape]) for shape, n in Counter(shape_of.values()).items()}
    per_split = {s: sum(1 for r in split_rows if r["split"] == s) for s in ("train", "validation", "test")}
    card = dataset_card(
        key, counts | {"duplicates_removed": duplicates},
        yields, operation_mix(paths), conversation_stats(sft), sft[:2], shapes)
    (out / "dataset_card.md").write_text(card)
    context.log.info(f"{key}: {len(sft)} SFT rows {per_split}, {len(pref)} preference rows -> {out}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(sft),
        "sft_rows": len(sft),
        "preference_rows": len(pref),
        "duplicates_removed": duplicates,
        "splits": dg.MetadataValue.json(per_split),
        "shape_mix": dg.MetadataValue.json({k: {"paths": p, "conversations": c} for k, (p, c) in shapes.items()}),
        "exports": dg.MetadataValue.path(str(out)),
        "dataset_card": dg.MetadataValue.md(card),
        "preview": dg.MetadataValue.md(md_table([{"trajectory_id": r["trajectory_id"], "split": r["split"],
                                                  "path_id": r["path_id"]} for r in split_rows])),
    })


def _exported(key: str) -> list[dict[str, Any]]:
    path = config.exports_dir(key) / "sft.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dg.asset_check(asset=training_splits, blocking=True, description="No path appears in two splits.")
def no_split_leakage(context: dg.AssetCheckExecutionContext, lineage: LineageStoreResource) -> dg.AssetCheckResult:
    rows = lineage.get().query("SELECT tool_set, path_id, split FROM splits")
    leaked = leaked_paths(rows)
    return dg.AssetCheckResult(passed=not leaked, metadata={"leaked_paths": len(leaked)})


@dg.asset_check(asset=training_splits, blocking=True,
                description="Exported conversations hold no hint text and only schema-valid calls.")
def exports_are_clean(context: dg.AssetCheckExecutionContext, lineage: LineageStoreResource) -> dg.AssetCheckResult:
    store = lineage.get()
    problems: list[str] = []
    rows = store.query("SELECT DISTINCT tool_set FROM splits")
    for tool_set in (r["tool_set"] for r in rows):
        specs = load_specs(store, tool_set)
        for row in _exported(tool_set):
            if contains_hint(row["messages"]):
                problems.append(f"{tool_set}/{row['trajectory_id']}: hint text")
            for m in row["messages"]:
                for tc in m.get("tool_calls") or []:
                    spec = specs.get(tc["function"]["name"])
                    try:
                        if spec is None:
                            raise jsonschema.ValidationError("unknown function")
                        jsonschema.validate(json.loads(tc["function"]["arguments"]), spec.parameters)
                    except jsonschema.ValidationError as exc:
                        problems.append(f"{tool_set}/{row['trajectory_id']}: {tc['function']['name']}: {exc.message}")
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": len(problems),
                                                              "examples": dg.MetadataValue.json(problems[:10])})
