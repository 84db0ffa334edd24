"""Stage 5, `trajectories`: context distillation into positive conversations and negatives.

Writes `trajectories` (messages without any hint, tools, the teacher calls that wrote
them, the turns they came from), `preference_pairs` (turn-level, with error type) and
`path_rejections` (stage `trajectories`) for paths whose distilled turns failed.
"""


import asyncio
import random
from collections import Counter, defaultdict

import dagster as dg

from magnet_dagster.defs.common import Progress, counts_table, md_table, options_for, run_with_llm, tool_sets
from magnet_dagster.defs.paths import load_specs
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.synthesis.distillation import Trajectory, contains_hint, positive_trajectory, preference_pair
from magnet_dagster.synthesis.translation import TurnResult
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.spec import stable_id


def turn_results(rows: list[dict], names: dict[str, str]) -> list[TurnResult]:
    """Stored turns back as TurnResults; `names` maps function ids to names."""
    return [TurnResult(index=r["turn_index"], kind=r["kind"],
                       functions=tuple(names[f] for f in r["function_ids"] or []),
                       query=r["query"], calls=[ToolCall.from_dict(c) for c in r["calls"] or []],
                       outputs=r["outputs"] or [], tools=r["tools"] or [])
            for r in sorted(rows, key=lambda r: r["turn_index"])]


@dg.asset(partitions_def=tool_sets, group_name="trajectories", deps=["queries"], kinds={"duckdb"},
          pool="teacher")
def trajectories(context: dg.AssetExecutionContext, lineage: LineageStoreResource,
                 teacher: LLMResource) -> dg.MaterializeResult:
    """Positive multi-turn conversations, and turn-level preference pairs from wrong hints."""
    key = context.partition_key
    store = lineage.get()
    options = options_for(store, key)
    specs = load_specs(store, key)
    names = {s.function_id(key): n for n, s in specs.items()}
    by_path: dict[str, list[dict]] = defaultdict(list)
    for r in store.rows("turns", key, "path_id, turn_index"):
        by_path[r["path_id"]].append(r)
    progress = Progress(context, len(by_path), "paths distilled")

    async def work(client: LLMClient) -> list[tuple[str, list[dict], object, object]]:
        async def one(i: int, path_id: str, rows: list[dict]):
            turns = turn_results(rows, names)
            traj = await positive_trajectory(client, turns, specs, seed=options.seed + i)
            pair = None
            if isinstance(traj, Trajectory) and options.negatives:
                pair = await preference_pair(client, traj, turns, specs,
                                             random.Random(f"{options.seed}:neg:{path_id}"), seed=options.seed + i)
            progress.tick()
            return path_id, rows, traj, pair

        return list(await asyncio.gather(*(one(i, p, r) for i, (p, r) in enumerate(sorted(by_path.items())))))

    results, llm_meta = run_with_llm(context, teacher.client(store, context), work, options.max_llm_failure_rate)
    traj_rows, pair_rows, rejections = [], [], []
    for path_id, rows, traj, pair in results:
        if not isinstance(traj, Trajectory):
            index, rule, reason = traj
            rejections.append({"tool_set": key, "run_id": context.run.run_id, "path_id": path_id,
                               "stage": "trajectories", "turn_index": index, "rule": rule, "reason": reason})
            continue
        if contains_hint(traj.messages):
            raise dg.Failure(f"hint text leaked into the conversation of path {path_id}")
        trajectory_id = stable_id(key, path_id, "trajectory")
        traj_rows.append({
            "trajectory_id": trajectory_id, "tool_set": key, "run_id": context.run.run_id, "path_id": path_id,
            "turn_ids": [r["turn_id"] for r in rows], "messages": traj.messages, "tools": traj.tools,
            "llm_call_ids": traj.llm_call_ids,
        })
        if pair:
            pair_rows.append({"pair_id": stable_id(trajectory_id, pair["turn_index"], pair["error_type"]),
                              "tool_set": key, "run_id": context.run.run_id, "trajectory_id": trajectory_id,
                              **pair})
    store.replace_partition(key, {"trajectories": traj_rows, "preference_pairs": pair_rows,
                                  "path_rejections": rejections}, stage="trajectories")
    context.log.info(f"{key}: {len(traj_rows)}/{len(by_path)} trajectories kept, {len(pair_rows)} preference pairs")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(traj_rows),
        "paths_in": len(by_path),
        "trajectories": len(traj_rows),
        "preference_pairs": len(pair_rows),
        "yield": round(len(traj_rows) / len(by_path), 4) if by_path else 0.0,
        "dropped_by_rule": dg.MetadataValue.md(counts_table(Counter(r["rule"] for r in rejections), "rule")),
        "error_types": dg.MetadataValue.json(dict(Counter(p["error_type"] for p in pair_rows))),
        "rejections": dg.MetadataValue.md(md_table([{k: r[k] for k in ("path_id", "turn_index", "rule", "reason")}
                                                    for r in rejections], limit=20)),
        "preview": dg.MetadataValue.md(md_table([{"trajectory_id": t["trajectory_id"],
                                                  "messages": len(t["messages"]),
                                                  "first_query": next(m["content"] for m in t["messages"]
                                                                      if m["role"] == "user")}
                                                 for t in traj_rows])),
        **llm_meta,
    })


@dg.asset_check(asset=trajectories, description="Trajectories per signature path stay above the tool set's `min_yield`.")
def yield_above_floor(context: dg.AssetCheckExecutionContext, lineage: LineageStoreResource) -> dg.AssetCheckResult:
    store = lineage.get()
    rows = store.query(
        "SELECT p.tool_set, count(DISTINCT p.path_id) AS paths, count(DISTINCT t.trajectory_id) AS trajectories "
        "FROM paths p LEFT JOIN trajectories t ON t.tool_set = p.tool_set AND t.path_id = p.path_id "
        "GROUP BY p.tool_set ORDER BY p.tool_set")
    below = {}
    for r in rows:
        floor = options_for(store, r["tool_set"]).min_yield
        achieved = r["trajectories"] / r["paths"] if r["paths"] else 0.0
        if achieved < floor:
            below[r["tool_set"]] = f"{achieved:.1%} < {floor:.1%}"
    return dg.AssetCheckResult(passed=not below, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"below_floor": dg.MetadataValue.json(below),
                                         "tool_sets": len(rows)})
