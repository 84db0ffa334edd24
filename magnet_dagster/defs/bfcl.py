"""`bfcl_multi_turn`: the student on BFCL's multi-turn categories, scored by BFCL's own checker.

Not partitioned: it measures the student, not a tool set. Each entry is run turn by turn
(the student's calls executed through the project's dispatcher, never bfcl's `eval`) and
judged by bfcl's `multi_turn_checker`. Rows go to `eval_results` under tool set `bfcl`,
mode `bfcl_multi_turn`, kind = category; metadata shows the leaderboard's table layout.
"""

import asyncio

import dagster as dg

from magnet_dagster.defs.common import md_table, run_with_llm
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.bfcl_bridge import (
    LEADERBOARD_COLUMNS, bfcl_verdict, leaderboard_table, load_category, run_student_on_entry,
)
from magnet_dagster.llm.client import LLMClient


class BfclConfig(dg.Config):
    entries_per_category: int = 3
    categories: list[str] = list(LEADERBOARD_COLUMNS)
    max_steps_per_turn: int = 4


@dg.asset(group_name="bfcl", kinds={"duckdb"}, pool="student")
def bfcl_multi_turn(context: dg.AssetExecutionContext, config: BfclConfig, lineage: LineageStoreResource,
                    student: LLMResource) -> dg.MaterializeResult:
    """BFCL multi-turn accuracy per category, in the leaderboard's layout."""
    store = lineage.get()
    work_items = [(cat, entry, gt) for cat in config.categories
                  for entry, gt in load_category(cat)[: config.entries_per_category]]
    client = student.client(store, context)

    async def work(c: LLMClient):
        async def one(cat, entry, gt):
            decoded = await run_student_on_entry(c, entry, cat, config.max_steps_per_turn)
            return cat, entry["id"], decoded, bfcl_verdict(decoded, gt, entry, cat)
        return await asyncio.gather(*(one(*item) for item in work_items))

    results, llm_meta = run_with_llm(context, client, work, bound=1.0)
    by_category: dict[str, list[bool]] = {}
    rows = []
    for cat, entry_id, decoded, verdict in results:
        by_category.setdefault(cat, []).append(bool(verdict["valid"]))
        rows.append({"result_id": f"{context.run.run_id[:8]}-{entry_id}", "tool_set": "bfcl",
                     "run_id": context.run.run_id, "student_model": client.model, "trajectory_id": entry_id,
                     "turn_index": -1, "kind": cat, "expected": None, "got": decoded,
                     "verdict": bool(verdict["valid"]), "reason": verdict.get("error_message"),
                     "llm_call_id": None, "mode": "bfcl_multi_turn"})
    store.append("eval_results", rows)
    table = leaderboard_table(by_category, client.model)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "leaderboard": dg.MetadataValue.md(md_table(table)),
        "entries": dg.MetadataValue.json({k: len(v) for k, v in by_category.items()}),
        "failures": dg.MetadataValue.md(md_table([{"entry": r["trajectory_id"], "reason": r["reason"]}
                                                  for r in rows if not r["verdict"]], limit=20)),
        **llm_meta,
    })
