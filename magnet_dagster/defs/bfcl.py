"""`bfcl_multi_turn`: the student on BFCL's multi-turn categories, scored by BFCL's own checker.

Not partitioned: it measures the student, not a tool set. Each entry is run as BFCL's
inference loop runs it (up to `max_steps_per_turn` steps per turn, default BFCL's 20;
held-out functions added at their turn with BFCL's prompt; the student's calls executed
through the project's dispatcher, never bfcl's `eval`) and judged by bfcl's
`multi_turn_checker`. Rows go to `eval_results` under tool set `bfcl`, mode
`bfcl_multi_turn`, kind = category; metadata shows the leaderboard's table layout with each
category's entry count and 95% Wilson interval.
"""

import dagster as dg

from magnet_dagster.defs.common import md_table, run_with_llm
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.bfcl_bridge import (
    LEADERBOARD_COLUMNS,
    category_scores,
    default_entries_per_category,
    leaderboard_table,
    run_bfcl_categories,
)
from magnet_dagster.evaluation.runner import MAX_STEPS_PER_TURN


class BfclConfig(dg.Config):
    #: None: every entry when the student is served by vLLM (`MAGNET_STUDENT=vllm`), else 3
    entries_per_category: int | None = None
    categories: list[str] = list(LEADERBOARD_COLUMNS)  # noqa: RUF012 (pydantic copies field defaults)
    max_steps_per_turn: int = MAX_STEPS_PER_TURN


@dg.asset(group_name="bfcl", kinds={"duckdb"}, pool="student")
def bfcl_multi_turn(
    context: dg.AssetExecutionContext, config: BfclConfig, lineage: LineageStoreResource, student: LLMResource
) -> dg.MaterializeResult:
    """BFCL multi-turn accuracy per category, in the leaderboard's layout, with counts and intervals."""
    store = lineage.get()
    entries = config.entries_per_category
    if entries is None:
        entries = default_entries_per_category(student.settings().kind)
    client = student.client(store, context)
    (rows, by_category), llm_meta = run_with_llm(
        context,
        client,
        lambda c: run_bfcl_categories(c, config.categories, entries, config.max_steps_per_turn, context.run.run_id),
        bound=1.0,
    )
    store.append("eval_results", rows)
    failures = [{"entry": r["trajectory_id"], "reason": r["reason"]} for r in rows if not r["verdict"]]
    scores = category_scores(by_category)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "leaderboard": dg.MetadataValue.md(md_table(leaderboard_table(by_category, client.model))),
            "scores": dg.MetadataValue.md(md_table(scores)),
            "entries": dg.MetadataValue.json({s["category"]: s["entries"] for s in scores}),
            "entries_per_category": "all" if entries is None else entries,
            "max_steps_per_turn": config.max_steps_per_turn,
            "failures": dg.MetadataValue.md(md_table(failures, limit=20)),
            **llm_meta,
        }
    )
