"""Stage 4, `queries`: back-and-forth translation of every path, turn by turn.

Writes `turns` (query, reference calls, execution outputs, tools offered, LLM calls) for
the paths that pass every check, and `path_rejections` (stage `queries`) with the rule
and reason for each dropped path. Each conversation gets a fresh executor and starting state.
"""


import asyncio
import random
from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import (
    Progress, counts_table, executor_for, md_table, options_for, run_with_llm, tool_sets,
)
from magnet_dagster.defs.paths import load_specs
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.graph.paths import MULTI_TURN, SignaturePath, Turn, distractor_count
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.synthesis.translation import PathRejection, TranslationSettings, translate_path
from magnet_dagster.evaluation.contamination import copied_queries, copied_states, shares_functions
from magnet_dagster.tools import bfcl
from magnet_dagster.tools.executors import ExecutorFactory, conversation_seed
from magnet_dagster.tools.spec import stable_id


@dg.asset(partitions_def=tool_sets, group_name="queries", deps=["signature_paths"], kinds={"duckdb"},
          pool="teacher")
def queries(context: dg.AssetExecutionContext, lineage: LineageStoreResource,
            teacher: LLMResource) -> dg.MaterializeResult:
    """User queries with executable, grounded reference calls for each kept path."""
    key = context.partition_key
    store = lineage.get()
    options = options_for(store, key)
    specs = load_specs(store, key)
    executor_spec = executor_for(store, key)
    path_rows = store.rows("paths", key, "path_id")
    progress = Progress(context, len(path_rows), "paths translated")

    async def work(client: LLMClient) -> list[tuple[dict, object]]:
        factory = ExecutorFactory(executor_spec, specs, client)

        async def one(i: int, row: dict) -> tuple[dict, object]:
            path = SignaturePath(walk=tuple(row["walk"]), turns=tuple(Turn.from_dict(t) for t in row["turns"]),
                                 operations=tuple(row["operations"]), shape=row.get("shape") or MULTI_TURN)
            rng = random.Random(f"{options.seed}:distractors:{row['path_id']}")
            others = sorted(set(specs) - set(path.functions) - {f for t in path.turns for f in t.target})
            distractors = rng.sample(others, min(distractor_count(path.shape, options.distractor_tools), len(others)))
            executor = factory.new(seed=conversation_seed(row["path_id"]))
            try:
                result = await translate_path(client, path, specs, executor, distractors,
                                              TranslationSettings(options.max_attempts, seed=options.seed + i,
                                                                  round_trip=options.round_trip))
            finally:
                executor.close()
            progress.tick()
            return row, result

        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(path_rows))))

    results, llm_meta = run_with_llm(context, teacher.client(store, context), work, options.max_llm_failure_rate)
    turn_rows, rejections = [], []
    for row, result in results:
        if isinstance(result, PathRejection):
            rejections.append({"tool_set": key, "run_id": context.run.run_id, "path_id": row["path_id"],
                               "stage": "queries", "turn_index": result.turn_index, "rule": result.rule,
                               "reason": result.reason})
            continue
        for t in result:
            turn_rows.append({
                "turn_id": stable_id(key, row["path_id"], t.index), "tool_set": key, "run_id": context.run.run_id,
                "path_id": row["path_id"], "turn_index": t.index, "kind": t.kind,
                "function_ids": [specs[f].function_id(key) for f in t.functions],
                "query": t.query, "calls": [c.as_dict() for c in t.calls], "outputs": t.outputs,
                "tools": t.tools, "attempts": t.attempts, "llm_call_ids": t.llm_call_ids,
                "simulated": t.simulated,
            })
    store.replace_partition(key, {"turns": turn_rows, "path_rejections": rejections}, stage="queries")
    kept = len(path_rows) - len(rejections)
    context.log.info(f"{key}: {kept}/{len(path_rows)} paths kept, {len(turn_rows)} turns")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(turn_rows),
        "paths_in": len(path_rows),
        "paths_kept": kept,
        "paths_dropped": len(rejections),
        "yield": round(kept / len(path_rows), 4) if path_rows else 0.0,
        "dropped_by_rule": dg.MetadataValue.md(counts_table(Counter(r["rule"] for r in rejections), "rule")),
        "rejections": dg.MetadataValue.md(md_table([{k: r[k] for k in ("path_id", "turn_index", "rule", "reason")}
                                                    for r in rejections], limit=20)),
        "preview": dg.MetadataValue.md(md_table([{"path_id": t["path_id"], "turn": t["turn_index"], "kind": t["kind"],
                                                  "query": t["query"], "calls": t["calls"]} for t in turn_rows])),
        **llm_meta,
    })


@dg.asset_check(asset=queries, blocking=True,
                description="Tool sets sharing functions with BFCL hold none of BFCL's multi-turn questions or "
                            "initial states.")
def no_bfcl_contamination(context: dg.AssetCheckExecutionContext,
                          lineage: LineageStoreResource) -> dg.AssetCheckResult:
    store = lineage.get()
    findings: list[dict] = []
    checked = []
    for ts in store.query("SELECT tool_set, executor FROM tool_sets ORDER BY tool_set"):
        key = ts["tool_set"]
        names = [r["name"] for r in store.rows("functions", key)]
        if not shares_functions(names):
            continue
        checked.append(key)
        turns = store.rows("turns", key)
        findings += [f | {"tool_set": key} for f in copied_queries((t["turn_id"], t["query"]) for t in turns)]
        if (ts["executor"] or {}).get("classes"):
            paths = {t["path_id"] for t in turns}
            states = [(p, cls, bfcl.initial_state(cls, conversation_seed(p)))
                      for p in sorted(paths) for cls in ts["executor"]["classes"]]
            findings += [f | {"tool_set": key} for f in copied_states(states)]
    return dg.AssetCheckResult(passed=not findings, metadata={
        "tool_sets_checked": dg.MetadataValue.json(checked),
        "findings": len(findings),
        "examples": dg.MetadataValue.json(findings[:10]),
    })
