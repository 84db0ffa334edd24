"""A user's own Python file and a ToolBench tool file go through the pipeline with the local model.

The README's two examples, each as a tool set folder with small options. SmolLM2-135M
is a weak teacher: the test does not ask for a yield, it checks that each format reaches
every stage, that the Python tools really ran (not simulated) and the ToolBench ones were
simulated, and that every path is kept or dropped with a rule.
"""

import shutil

import dagster as dg
import pytest

from magnet_dagster.definitions import defs
from magnet_dagster.defs.jobs import magnet_pipeline
from magnet_dagster.store.lineage import LineageStore
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

OPTIONS = ("options:\n  candidates_per_function: 4\n  walk_steps: 2\n  walks_per_node: 1\n  max_attempts: 2\n"
           "  seed: 5\n  mix: {multi_turn: 0.4, single: 0.2, parallel: 0.1, multiple: 0.2, irrelevance: 0.1}\n")


@pytest.mark.parametrize("example, executor, functions", [
    ("pantry.py", "python", 6),
    ("weather_hub.json", "simulated", 5),
])
def test_example_tool_set_reaches_every_stage(magnet_home, tool_sets_dir, example, executor, functions):
    key = example.split(".")[0]
    folder = tool_sets_dir / key
    folder.mkdir()
    shutil.copy(ROOT / "examples" / "tool_sets" / example, folder / example)
    # inside a folder, a Python file is imported only as a `python:` target
    targets = f"python: [{example}]\n" if example.endswith(".py") else ""
    (folder / "toolset.yaml").write_text(targets + OPTIONS)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tool_sets", [key])
        result = defs.resolve_job_def(magnet_pipeline.name).execute_in_process(instance=instance, partition_key=key)
    assert result.success
    store = LineageStore(magnet_home / "lineage.duckdb")
    q = lambda sql: store.query(sql, [key])  # noqa: E731
    assert q("SELECT executor->>'kind' AS k FROM tool_sets WHERE tool_set = ?")[0]["k"] == executor
    assert store.count("functions", key) == functions
    shapes = {r["shape"]: r["n"] for r in q("SELECT shape, count(*) AS n FROM paths WHERE tool_set = ? GROUP BY 1")}
    assert shapes.get("multi_turn", 0) > 0 and shapes.get("single", 0) > 0 and shapes.get("irrelevance", 0) > 0, shapes
    paths = sum(shapes.values())
    kept = q("SELECT count(DISTINCT path_id) AS n FROM turns WHERE tool_set = ?")[0]["n"]
    dropped = q("SELECT count(*) AS n FROM path_rejections WHERE tool_set = ? AND stage = 'queries'")[0]["n"]
    assert kept + dropped == paths
    simulated = [r["simulated"] for r in q("SELECT simulated FROM turns WHERE tool_set = ? AND kind = 'call'")]
    # Python tools run in-process; ToolBench APIs have no implementation, so the teacher plays them.
    assert simulated == [executor == "simulated"] * len(simulated)
    if executor == "python":
        errors = q("SELECT reason FROM path_rejections WHERE tool_set = ? AND rule = 'execution'")
        assert all("simulat" not in r["reason"] for r in errors), errors
