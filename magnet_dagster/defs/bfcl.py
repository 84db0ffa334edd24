"""`bfcl_multi_turn`: the student on BFCL's multi-turn categories, scored by BFCL's own checker.

Not partitioned: it measures the student, not a tool set. Each entry is run turn by turn
(the student's calls executed through the project's dispatcher, never bfcl's `eval`) and
judged by bfcl's `multi_turn_checker`. Rows go to `eval_results` under tool set `bfcl`,
mode `bfcl_multi_turn`, kind = category; metadata shows the leaderboard's table layout.
"""

import dagster as dg

from magnet_dagster.defs.common import md_table, run_with_llm
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.bfcl_bridge import LEADERBOARD_COLUMNS, leaderboard_table, run_bfcl_categories


class BfclConfig(dg.Config):
    entries_per_category: int = 3
    categories: list[str] = list(LEADERBOARD_COLUMNS)  # noqa: RUF012 (pydantic copies field defaults)
    max_steps_per_turn: int = 4


@dg.asset(group_name="bfcl", kinds={"duckdb"}, pool="student")
def bfcl_multi_turn(
    context: dg.AssetExecutionContext, config: BfclConfig, lineage: LineageStoreResource, student: LLMResource
) -> dg.MaterializeResult:
    """BFCL multi-turn accuracy per category, in the leaderboard's layout."""
    store = lineage.get()
    client = student.client(store, context)
    (rows, by_category), llm_meta = run_with_llm(
        context,
        client,
        lambda c: run_bfcl_categories(
            c, config.categories, config.entries_per_category, config.max_steps_per_turn, context.run.run_id
        ),
        bound=1.0,
    )
    store.append("eval_results", rows)
    failures = [{"entry": r["trajectory_id"], "reason": r["reason"]} for r in rows if not r["verdict"]]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "leaderboard": dg.MetadataValue.md(md_table(leaderboard_table(by_category, client.model))),
            "entries": dg.MetadataValue.json({k: len(v) for k, v in by_category.items()}),
            "failures": dg.MetadataValue.md(md_table(failures, limit=20)),
            **llm_meta,
        }
    )
