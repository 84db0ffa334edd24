"""Stage 7, `student_evaluation`: the student replays the test split, turn by turn.

Teacher-forced always; free-running too when the tool set's functions really execute
(the student's calls run through the dispatcher and the tools' state is compared after
each turn). Appends to `eval_results` (one row per turn and mode: expected, got, verdict,
reason, student model, run id), so re-evaluations accumulate and the trend stays visible.
The schedule `nightly_evaluation` reruns it for every partition.
"""

import dagster as dg

from magnet_dagster.defs.common import md_table, run_with_llm, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.runner import evaluate, summarise, verdict_row
from magnet_dagster.store.loaders import load_executor, load_specs, load_test_split
from magnet_dagster.tools.executors import ExecutorFactory

PREVIOUS_SQL = """
SELECT run_id, mode, student_model, count(*) AS turns, round(avg(verdict::INT), 4) AS turn_accuracy,
       max(created_at) AS evaluated_at
FROM eval_results WHERE tool_set = ? AND run_id <> ?
GROUP BY run_id, mode, student_model ORDER BY evaluated_at DESC LIMIT 10
"""


@dg.asset(partitions_def=tool_sets, group_name="evaluation", deps=["training_splits"], kinds={"duckdb"}, pool="student")
def student_evaluation(
    context: dg.AssetExecutionContext, lineage: LineageStoreResource, student: LLMResource
) -> dg.MaterializeResult:
    """Call accuracy (AST match), turn and conversation success, state match, on the test split."""
    key, store = context.partition_key, lineage.get()
    specs, tests = load_specs(store, key), load_test_split(store, key)
    factory = ExecutorFactory(load_executor(store, key), specs)
    client = student.client(store, context)
    verdicts, llm_meta = run_with_llm(context, client, lambda c: evaluate(c, tests, specs, factory), bound=1.0)
    rows = [verdict_row(v, key, context.run.run_id, client.model) for v in verdicts]
    store.append("eval_results", rows)
    summary = summarise(verdicts)
    context.log.info(f"{key}: {summary}")
    previous = store.query(PREVIOUS_SQL, [key, context.run.run_id])
    return dg.MaterializeResult(
        metadata=evaluation_metadata(client.model, len(tests), summary, rows, previous) | llm_meta
    )


def evaluation_metadata(model: str, tests: int, summary: dict, rows: list[dict], previous: list[dict]) -> dict:
    forced = summary.get("teacher_forced", {})
    return {
        "dagster/row_count": len(rows),
        "student_model": model,
        "test_conversations": tests,
        "turn_accuracy": forced.get("turn_accuracy") or 0.0,
        "conversation_accuracy": forced.get("conversation_accuracy") or 0.0,
        "summary": dg.MetadataValue.json(summary),
        "summary_table": dg.MetadataValue.md(
            md_table(
                [
                    {
                        "mode": mode,
                        "conversations": s["conversations"],
                        "turns": s["turns"],
                        "turn_accuracy": s["turn_accuracy"],
                        "conversation_accuracy": s["conversation_accuracy"],
                        "state_match": s["state_match"],
                    }
                    for mode, s in summary.items()
                ]
            )
        ),
        "previous_evaluations": dg.MetadataValue.md(md_table(previous)),
        "preview": dg.MetadataValue.md(
            md_table(
                [
                    {
                        "mode": r["mode"],
                        "trajectory_id": r["trajectory_id"],
                        "turn": r["turn_index"],
                        "kind": r["kind"],
                        "verdict": r["verdict"],
                        "reason": r["reason"],
                    }
                    for r in rows
                ]
            )
        ),
    }
