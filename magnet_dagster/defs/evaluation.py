"""Stage 7, `student_evaluation`: the student replays the test split, turn by turn.

Teacher-forced always (every reference step asked for with the reference history up to it);
free-running too when the tool set's functions really execute: the student takes up to
`max_steps_per_turn` steps per turn (BFCL's 20), its calls run through the dispatcher and
their results are fed back, and each call turn is judged like BFCL's checker (the tools'
state, and the reference's results among the student's), with the strict per-call AST
match reported beside it. Held-out functions arrive as BFCL adds them. Appends to
`eval_results` (one row per turn and mode: expected, got, verdict, reason, student model,
run id; `got` carries the strict match and the steps taken), so re-evaluations accumulate
and the trend stays visible.
The schedule `nightly_evaluation` reruns it for every partition.
"""

import dagster as dg

from magnet_dagster.defs.common import md_table, run_with_llm, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.runner import MAX_STEPS_PER_TURN, evaluate
from magnet_dagster.evaluation.scoring import summarise, verdict_row
from magnet_dagster.store.loaders import load_executor, load_specs, load_test_split
from magnet_dagster.tools.executors import ExecutorFactory

PREVIOUS_SQL = """
SELECT run_id, mode, student_model, count(*) AS turns, round(avg(verdict::INT), 4) AS turn_accuracy,
       max(created_at) AS evaluated_at
FROM eval_results WHERE tool_set = ? AND run_id <> ?
GROUP BY run_id, mode, student_model ORDER BY evaluated_at DESC LIMIT 10
"""


class EvaluationConfig(dg.Config):
    #: steps the student may take in one turn of free-running replay (BFCL's MAXIMUM_STEP_LIMIT)
    max_steps_per_turn: int = MAX_STEPS_PER_TURN


@dg.asset(partitions_def=tool_sets, group_name="evaluation", deps=["training_splits"], kinds={"duckdb"}, pool="student")
def student_evaluation(
    context: dg.AssetExecutionContext, config: EvaluationConfig, lineage: LineageStoreResource, student: LLMResource
) -> dg.MaterializeResult:
    """Call accuracy (AST match), turn and conversation success, state match, on the test split."""
    key, store = context.partition_key, lineage.get()
    specs, tests = load_specs(store, key), load_test_split(store, key)
    factory = ExecutorFactory(load_executor(store, key), specs)
    client = student.client(store, context)
    verdicts, llm_meta = run_with_llm(
        context, client, lambda c: evaluate(c, tests, specs, factory, config.max_steps_per_turn), bound=1.0
    )
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
    free = summary.get("free_running", {})
    return {
        "dagster/row_count": len(rows),
        "student_model": model,
        "test_conversations": tests,
        "turn_accuracy": forced.get("turn_accuracy") or 0.0,
        "conversation_accuracy": forced.get("conversation_accuracy") or 0.0,
        **(
            {
                "free_running_turn_accuracy": free.get("turn_accuracy") or 0.0,
                "free_running_strict_turn_accuracy": free.get("strict_turn_accuracy") or 0.0,
            }
            if free
            else {}
        ),
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
                        "strict_turn_accuracy": s["strict_turn_accuracy"],
                        "strict_conversation_accuracy": s["strict_conversation_accuracy"],
                        "state_match": s["state_match"],
                        "steps_per_call_turn": s["steps_per_call_turn"],
                        "forced_quits": s["forced_quits"],
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
                        "strict_match": r["got"].get("strict_match"),
                        "reason": r["reason"],
                    }
                    for r in rows
                ]
            )
        ),
    }
