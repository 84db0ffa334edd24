"""`nightly_evaluation`: re-evaluate every partition's test split with the current student."""

import dagster as dg

from magnet_dagster.defs.jobs import evaluation_job
from magnet_dagster.defs.partitions import TOOL_SETS


@dg.schedule(
    cron_schedule="0 2 * * *",
    job=evaluation_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night at 02:00, re-evaluate the current student on every tool set's test split "
    "(one run per partition; results accumulate in eval_results).",
)
def nightly_evaluation(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d") if context.scheduled_execution_time else "now"
    return [
        dg.RunRequest(run_key=f"{key}:{day}", partition_key=key)
        for key in context.instance.get_dynamic_partitions(TOOL_SETS)
    ]
