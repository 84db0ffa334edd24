"""`tool_set_sensor`: each file or folder in `MAGNET_TOOL_SETS_DIR` is a tool set.

A new one becomes a partition and gets a run of the whole pipeline; a changed one
(content hash) gets a new run; an unchanged one gets none. The cursor remembers the hash
each tool set was last run with.
"""

import json

import dagster as dg

from magnet_dagster import config
from magnet_dagster.defs.jobs import magnet_pipeline
from magnet_dagster.defs.partitions import TOOL_SETS, tool_sets
from magnet_dagster.tools.formats import scan_tool_sets


@dg.sensor(
    job=magnet_pipeline,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Each file or folder in MAGNET_TOOL_SETS_DIR is a tool set: a new one becomes a partition and "
    "gets a run of the whole pipeline, a changed one (content hash) a new run, an unchanged one none.",
)
def tool_set_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    found, skipped = scan_tool_sets(config.tool_sets_dir())
    for entry, why in skipped.items():
        context.log.warning(f"skipping {entry}: {why}")
    existing = set(context.instance.get_dynamic_partitions(TOOL_SETS))
    new_keys = sorted(k for k in found if k not in existing)
    requests = [
        dg.RunRequest(run_key=f"{name}:{digest}", partition_key=name, tags={"magnet/content_hash": digest})
        for name, digest in sorted(found.items())
        if seen.get(name) != digest
    ]
    if not requests and not new_keys:
        return dg.SkipReason(f"no new or changed tool sets in {config.tool_sets_dir()}")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[tool_sets.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({**seen, **found}, sort_keys=True),
    )
