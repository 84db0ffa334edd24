"""Stage 7, `student_evaluation`: the student replays the test split, turn by turn.

Teacher-forced always; free-running too when the tool set's functions really execute
(the student's calls run through the dispatcher and the tools' state is compared after
each turn). Appends to `eval_results` (one row per turn and mode: expected, got, verdict,
reason, student model, run id), so re-evaluations accumulate and the trend stays visible.
The schedule `nightly_evaluation` reruns it for every partition.
"""

import asyncio

import dagster as dg

from magnet_dagster.defs.common import executor_for, md_table, run_with_llm, tool_sets
from magnet_dagster.defs.paths import load_specs
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.runner import free_running, summarise, teacher_forced, verdict_row
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.tools.executors import ExecutorFactory, conversation_seed

TEST_SPLIT_SQL = """
SELECT t.*, list_append(p.operations, coalesce(p.shape, 'multi_turn')) AS operations FROM trajectories t
JOIN splits s ON s.tool_set = t.tool_set AND s.trajectory_id = t.trajectory_id
JOIN paths p ON p.tool_set = t.tool_set AND p.path_id = t.path_id
WHERE t.tool_set = ? AND s.split = 'test'
ORDER BY t.trajectory_id
"""

PREVIOUS_SQL = """
SELECT run_id, mode, student_model, count(*) AS turns, round(avg(verdict::INT), 4) AS turn_accuracy,
       max(created_at) AS evaluated_at
FROM eval_results WHERE tool_set = ? AND run_id <> ?
GROUP BY run_id, mode, student_model ORDER BY evaluated_at DESC LIMIT 10
"""


@dg.asset(partitions_def=tool_sets, group_name="evaluation", deps=["training_splits"], kinds={"duckdb"},
          pool="student")
def student_evaluation(context: dg.AssetExecutionContext, lineage: LineageStoreResource,
                       student: LLMResource) -> dg.MaterializeResult:
    """Call accuracy (AST match), turn and conversation success, state match, on the test split."""
    key = context.partition_key
    store = lineage.get()
    specs = load_specs(store, key)
    tests = store.query(TEST_SPLIT_SQL, [key])
    executor = executor_for(store, key)
    factory = ExecutorFactory(executor, specs)
    client = student.client(store, context)

    async def work(c: LLMClient):
        jobs = [teacher_forced(c, t, specs, t["operations"]) for t in tests]
        if factory.executable:
            jobs += [free_running(c, t, specs, t["operations"],
                                  lambda seed=conversation_seed(t["path_id"]): factory.new(seed)) for t in tests]
        return [v for conv in await asyncio.gather(*jobs) for v in conv]

    verdicts, llm_meta = run_with_llm(context, client, work, bound=1.0)
    rows = [verdict_row(v, key, context.run.run_id, client.model) for v in verdicts]
    store.append("eval_results", rows)
    summary = summarise(verdicts)
    previous = store.query(PREVIOUS_SQL, [key, context.run.run_id])
    forced = summary.get("teacher_forced", {})
    context.log.info(f"{key}: {summary}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "student_model": client.model,
        "test_conversations": len(tests),
        "turn_accuracy": forced.get("turn_accuracy") or 0.0,
        "conversation_accuracy": forced.get("conversation_accuracy") or 0.0,
        "summary": dg.MetadataValue.json(summary),
        "summary_table": dg.MetadataValue.md(md_table([
            {"mode": mode, "conversations": s["conversations"], "turns": s["turns"],
             "turn_accuracy": s["turn_accuracy"], "conversation_accuracy": s["conversation_accuracy"],
             "state_match": s["state_match"]} for mode, s in summary.items()])),
        "previous_evaluations": dg.MetadataValue.md(md_table(previous)),
        "preview": dg.MetadataValue.md(md_table([{"mode": r["mode"], "trajectory_id": r["trajectory_id"],
                                                  "turn": r["turn_index"], "kind": r["kind"],
                                                  "verdict": r["verdict"], "reason": r["reason"]} for r in rows])),
        **llm_meta,
    })
