"""Stage 4, `queries`: back-and-forth translation of every path, turn by turn.

Writes `turns` (query, reference calls, execution outputs, tools offered, LLM calls) for
the paths that pass every check, and `path_rejections` (stage `queries`) with the rule
and reason for each dropped path. Each conversation gets a fresh executor and starting state.
The blocking check `no_bfcl_contamination` reads this run's partition only.
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
from magnet_dagster.evaluation.contamination import partition_findings
from magnet_dagster.previews import compact_calls, funnel, percent, shorten, spread
from magnet_dagster.store.loaders import load_executor
from magnet_dagster.synthesis.inputs import load_partition
from magnet_dagster.synthesis.translation import TranslationOutcome, translate_paths
from magnet_dagster.tools.executors import ExecutorFactory


@dg.asset(
    partitions_def=tool_sets, group_name="magnet_pipeline", deps=["signature_paths"], kinds={"duckdb"}, pool="teacher"
)
def queries(
    context: dg.AssetExecutionContext, lineage: LineageStoreResource, teacher: LLMResource
) -> dg.MaterializeResult:
    """User queries with executable, grounded reference calls for each kept path."""
    key, store = context.partition_key, lineage.get()
    partition, executor = load_partition(store, key, context.run.run_id), load_executor(store, key)
    path_rows = store.rows("paths", key, "path_id")
    progress = Progress(context, len(path_rows), "paths translated")
    outcome, llm_meta = run_with_llm(
        context,
        teacher.client(store, context),
        lambda client: translate_paths(
            client, path_rows, partition, ExecutorFactory(executor, partition.specs, client), tick=progress.tick
        ),
        partition.options.max_llm_failure_rate,
    )
    store.replace_partition(
        key, {"turns": outcome.turn_rows, "path_rejections": outcome.rejection_rows}, stage="queries"
    )
    kept = outcome.paths_in - len(outcome.rejection_rows)
    context.log.info(f"{key}: {kept}/{outcome.paths_in} paths kept, {len(outcome.turn_rows)} turns")
    return dg.MaterializeResult(metadata=queries_metadata(outcome) | llm_meta)


def queries_metadata(outcome: TranslationOutcome) -> dict:
    """Funnel line (paths in -> kept) first, drops by rule, rejections and a preview across
    turn kinds, with calls as `fn(a=1)`."""
    rejections, turns = outcome.rejection_rows, outcome.turn_rows
    kept = outcome.paths_in - len(rejections)
    sample = spread(turns, lambda t: (t["kind"], len(t["calls"] or [])), limit=12, within=lambda t: t["path_id"])
    preview = [
        {
            "turn": f"{t['kind']} #{t['turn_index']}",
            "query": shorten(t["query"], 160),
            "reference calls": compact_calls(t["calls"]),
        }
        for t in sample
    ]
    return {
        "funnel": funnel(kept, outcome.paths_in, "paths kept") + f", {len(turns)} turns; {len(rejections)} dropped",
        "dagster/row_count": len(turns),
        "paths_in": outcome.paths_in,
        "paths_kept": kept,
        "paths_dropped": len(rejections),
        "yield": percent(kept, outcome.paths_in),
        "dropped_by_rule": counts_table(Counter(r["rule"] for r in rejections), "rule", "paths"),
        "rejections": rejections_table(rejections),
        "preview": table(preview, width=160),
    }


@dg.asset_check(
    asset=queries,
    blocking=True,
    description="A tool set sharing functions with BFCL holds none of BFCL's multi-turn questions or "
    "initial states (this run's partition only).",
)
def no_bfcl_contamination(context: dg.AssetCheckExecutionContext, lineage: LineageStoreResource) -> dg.AssetCheckResult:
    store = lineage.get()
    findings: list[dict] = []
    checked = []
    for key in check_partitions(context, store):
        found = partition_findings(
            [r["name"] for r in store.rows("functions", key)], store.rows("turns", key), load_executor(store, key)
        )
        if found is not None:
            checked.append(key)
            findings += [f | {"tool_set": key} for f in found]
    return dg.AssetCheckResult(
        passed=not findings,
        metadata={
            "tool_sets_checked": ", ".join(checked) or "none (no tool set shares functions with BFCL)",
            "findings": len(findings),
            "examples": table(
                [{k: f.get(k, "") for k in ("tool_set", "id", "why", "text")} for f in findings], limit=10
            ),
        },
    )
