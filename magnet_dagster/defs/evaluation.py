"""Stage 7, `student_evaluation`: the student replays the test split, turn by turn.

Appends to `eval_results` (one row per turn: expected, got, verdict, reason, student
model, run id), so re-evaluations accumulate and the trend stays visible. The schedule
`nightly_evaluation` reruns it for every partition.
"""


import dagster as dg

from magnet_dagster.defs.common import md_table, run_with_llm, tool_sets
from magnet_dagster.defs.paths import load_specs
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.runner import evaluate, summarise, verdict_row

TEST_SPLIT_SQL = """
SELECT t.* FROM trajectories t
JOIN splits s ON s.tool_set = t.tool_set AND s.trajectory_id = t.trajectory_id
WHERE t.tool_set = ? AND s.split = 'test'
ORDER BY t.trajectory_id
"""

PREVIOUS_SQL = """
SELECT run_id, student_model, count(*) AS turns, avg(verdict::INT) AS turn_accuracy, max(created_at) AS evaluated_at
FROM eval_results WHERE tool_set = ? AND run_id <> ?
GROUP BY run_id, student_model ORDER BY evaluated_at DESC LIMIT 5
"""


@dg.asset(partitions_def=tool_sets, group_name="evaluation", deps=["training_splits"], kinds={"duckdb"},
          pool="student")
def student_evaluation(context: dg.AssetExecutionContext, lineage: LineageStoreResource,
                       student: LLMResource) -> dg.MaterializeResult:
    """Call accuracy (AST match), turn and conversation success on the test split."""
    key = context.partition_key
    store = lineage.get()
    specs = load_specs(store, key)
    tests = store.query(TEST_SPLIT_SQL, [key])
    client = student.client(store, context)
    verdicts, llm_meta = run_with_llm(context, client, lambda c: evaluate(c, tests, specs), bound=1.0)
    rows = [verdict_row(v, key, context.run.run_id, client.model) for v in verdicts]
    store.append("eval_results", rows)
    summary = summarise(verdicts)
    previous = store.query(PREVIOUS_SQL, [key, context.run.run_id])
    context.log.info(f"{key}: {summary}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "student_model": client.model,
        "test_conversations": summary["conversations"],
        "turns": summary["turns"],
        "turn_accuracy": summary["turn_accuracy"] if summary["turn_accuracy"] is not None else 0.0,
        "conversation_accuracy": (summary["conversation_accuracy"]
                                  if summary["conversation_accuracy"] is not None else 0.0),
        "by_kind": dg.MetadataValue.json(summary["by_kind"]),
        "previous_evaluations": dg.MetadataValue.md(md_table(previous)),
        "preview": dg.MetadataValue.md(md_table([{"trajectory_id": r["trajectory_id"], "turn": r["turn_index"],
                                                  "kind": r["kind"], "verdict": r["verdict"], "reason": r["reason"]}
                                                 for r in rows])),
        **llm_meta,
    })
