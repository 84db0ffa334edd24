"""A malformed tool set next to a good one: the good partition completes, the bad run fails with the reason."""

import dagster as dg
import pytest

from magnet_dagster.defs.jobs import magnet_pipeline
from magnet_dagster.definitions import defs
from magnet_dagster.defs.sensors import tool_set_sensor
from magnet_dagster.store.lineage import LineageStore
from tests.conftest import write_tiny_bfcl_tool_set

pytestmark = pytest.mark.integration


def test_bad_tool_set_fails_alone_with_file_and_position(magnet_home, tool_sets_dir):
    write_tiny_bfcl_tool_set(tool_sets_dir, "good", ["add", "multiply", "round_number"], seed=4)
    (tool_sets_dir / "broken.json").write_text('[{"type": "function", "function": {"name": "f",,}}]')
    with dg.instance_for_test() as instance:
        result = tool_set_sensor(dg.build_sensor_context(instance=instance, cursor=None))
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        keys = sorted(r.partition_key for r in result.run_requests)
        assert keys == ["broken", "good"]
        job = defs.resolve_job_def(magnet_pipeline.name)
        outcomes = {key: job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
                    for key in keys}

    assert outcomes["good"].success
    assert not outcomes["broken"].success
    failure = next(e for e in outcomes["broken"].all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message + (failure.step_failure_data.user_failure_data.description or "")
    assert "broken.json" in message and "line 1 column" in message, message
    store = LineageStore(magnet_home / "lineage.duckdb")
    assert store.count("functions", "good") == 3
    assert store.count("functions", "broken") == 0
    assert store.count("paths", "good") > 0
