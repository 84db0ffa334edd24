"""tool_set_sensor on a real (ephemeral) Dagster instance: new, changed, unchanged tool sets."""

import json

import dagster as dg

from magnet_dagster.defs.sensors import tool_set_sensor

TOOLS = [{"type": "function", "function": {"name": "greet", "description": "Greet someone.",
                                           "parameters": {"type": "object", "properties": {"who": {"type": "string"}},
                                                          "required": ["who"]}}}]


def _evaluate(instance: dg.DagsterInstance, cursor: str | None):
    result = tool_set_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_sensor_adds_and_runs_a_new_tool_set(tool_sets_dir):
    (tool_sets_dir / "greetings.json").write_text(json.dumps(TOOLS))
    with dg.DagsterInstance.ephemeral() as instance:
        result = _evaluate(instance, None)
        assert isinstance(result, dg.SensorResult)
        assert [r.partition_key for r in result.run_requests] == ["greetings"]
        assert instance.get_dynamic_partitions("tool_sets") == ["greetings"]


def test_sensor_ignores_unchanged_tool_set(tool_sets_dir):
    (tool_sets_dir / "greetings.json").write_text(json.dumps(TOOLS))
    with dg.DagsterInstance.ephemeral() as instance:
        first = _evaluate(instance, None)
        again = _evaluate(instance, first.cursor)
        assert isinstance(again, dg.SkipReason)


def test_sensor_reruns_a_changed_tool_set(tool_sets_dir):
    path = tool_sets_dir / "greetings.json"
    path.write_text(json.dumps(TOOLS))
    with dg.DagsterInstance.ephemeral() as instance:
        first = _evaluate(instance, None)
        changed = TOOLS + [{"type": "function", "function": {"name": "wave", "description": "Wave.",
                                                             "parameters": {"type": "object", "properties": {}}}}]
        path.write_text(json.dumps(changed))
        second = _evaluate(instance, first.cursor)
        assert isinstance(second, dg.SensorResult)
        assert [r.partition_key for r in second.run_requests] == ["greetings"]
        assert second.run_requests[0].run_key != first.run_requests[0].run_key
        assert not second.dynamic_partitions_requests, "the partition exists already"


def test_sensor_skips_entries_whose_names_are_not_partition_keys(tool_sets_dir):
    (tool_sets_dir / "bad name!.json").write_text(json.dumps(TOOLS))
    (tool_sets_dir / "good.json").write_text(json.dumps(TOOLS))
    with dg.DagsterInstance.ephemeral() as instance:
        result = _evaluate(instance, None)
        assert [r.partition_key for r in result.run_requests] == ["good"]
