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

from magnet_dagster.defs.common import run_with_llm, table
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.bfcl_bridge import (
    LEADERBOARD_COLUMNS,
    category_scores,
    default_entries_per_category,
    leaderboard_table,
    run_bfcl_categories,
)
from magnet_dagster.evaluation.runner import MAX_STEPS_PER_TURN
from magnet_dagster.previews import funnel


class BfclConfig(dg.Config):
    #: None: every entry when the student is served by vLLM (`MAGNET_STUDENT=vllm`), else 3
    entries_per_category: int | None = None
    categories: list[str] = list(LEADERBOARD_COLUMNS)  # noqa: RUF012 (pydantic copies field defaults)
    max_steps_per_turn: int = MAX_STEPS_PER_TURN
    #: a checkpoint to evaluate, served by vLLM (as `student_evaluation`'s); unset: MAGNET_STUDENT's backend
    checkpoint: str | None = None


@dg.asset(group_name="bfcl", kinds={"duckdb"}, pool="student")
def bfcl_multi_turn(
    context: dg.AssetExecutionContext, config: BfclConfig, lineage: LineageStoreResource, student: LLMResource
) -> dg.MaterializeResult:
    """BFCL multi-turn accuracy per category, in the leaderboard's layout, with counts and intervals."""
    store = lineage.get()
    entries = config.entries_per_category
    if entries is None:
        entries = default_entries_per_category("vllm" if config.checkpoint else student.settings().kind)
    with student.serving(config.checkpoint) as (backend, checkpoint):
        client = student.client(store, context, backend)
        (rows, by_category), llm_meta = run_with_llm(
            context,
            client,
            lambda c: run_bfcl_categories(
                c, config.categories, entries, config.max_steps_per_turn, context.run.run_id, checkpoint
            ),
            bound=1.0,
        )
    store.append("eval_results", rows)
    return dg.MaterializeResult(
        metadata=bfcl_metadata(rows, by_category, client.model, entries, config.max_steps_per_turn) | llm_meta
    )


def bfcl_metadata(
    rows: list[dict], by_category: dict[str, list[bool]], model: str, entries: int | None, max_steps: int
) -> dict:
    """Funnel line (entries correct) first, the leaderboard with entries and intervals, failures."""
    scores = category_scores(by_category)
    correct = sum(s["correct"] for s in scores)
    failures = [{"entry": r["trajectory_id"], "reason": r["reason"]} for r in rows if not r["verdict"]]
    return {
        "funnel": funnel(correct, len(rows), "BFCL multi-turn entries correct")
        + "; entries per category: "
        + ", ".join(f"{s['category']} {s['entries']}" for s in scores),
        "dagster/row_count": len(rows),
        "leaderboard": table(leaderboard_rows(leaderboard_table(by_category, model)), limit=20),
        "entries_per_category": "all" if entries is None else entries,
        "max_steps_per_turn": max_steps,
        "failures": table(failures, limit=20, width=160),
    }


def leaderboard_rows(board: list[dict]) -> list[dict]:
    """BFCL's leaderboard layout turned on its side (one row per leaderboard column: accuracy,
    entries, 95% interval), so it fits the UI's metadata column; the model heads the accuracy."""
    accuracy, entries, interval = board
    return [
        {"column": column, f"accuracy ({accuracy['Model']})": accuracy[column], "entries": entries[column],
         "95% interval (Wilson)": interval[column]}
        for column in accuracy
        if column != "Model"
    ]  # fmt: skip
