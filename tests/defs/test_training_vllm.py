"""The loop closed for real (integration): the packaged GGUF converted (`base_student`), a few
SFT and DPO steps of TRL on exports the pipeline made (`student_training`, the real SmolLM2-135M),
and `student_evaluation` with the trained checkpoint served by vLLM's CPU build, its rows tagged
by checkpoint. The exports come from the pipeline run with the schema-following fake teacher (a
fake, named as one: this test is about training and serving; the pipeline against the real
local server is tests/defs/test_pipeline.py).

Needs `make vllm` (`.venv-vllm`): skipped without it, except under CI, where it fails.
vLLM starts eagerly (`--enforce-eager`, about 45 s instead of minutes of compiling).
"""

import os
import time

import dagster as dg
import pytest

from magnet_dagster.defs.evaluation import student_evaluation
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.defs.training import base_student, student_training
from magnet_dagster.llm import vllm_server
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.training.checkpoints import read_provenance, served_name
from tests.conftest import write_tiny_bfcl_tool_set
from tests.defs.test_assets_fast import CHECKS, PIPELINE, FakeLLMResource
from tests.defs.test_training_assets import FUNCTIONS

pytestmark = pytest.mark.integration


@pytest.fixture
def vllm_installed():
    if os.environ.get("MAGNET_VLLM_PYTHON") or (vllm_server.VLLM_VENV / "bin" / "python").is_file():
        return
    if os.environ.get("CI", "") not in ("", "0", "false"):
        pytest.fail(f"vLLM is not installed in {vllm_server.VLLM_VENV}: CI must run `make vllm` first")
    pytest.skip(f"vLLM is not installed ({vllm_server.VLLM_VENV} missing): `make vllm` builds it")


def test_train_then_evaluate_the_trained_checkpoint_served_by_vllm(vllm_installed, magnet_home, tool_sets_dir,
                                                                   monkeypatch, capsys):
    monkeypatch.setenv("MAGNET_VLLM_ARGS", "--enforce-eager")
    write_tiny_bfcl_tool_set(tool_sets_dir, "tiny", FUNCTIONS)
    fake = {"lineage": LineageStoreResource(), "teacher": FakeLLMResource(role="teacher"),
            "student": FakeLLMResource(role="student")}
    real = {"lineage": LineageStoreResource(), "student": LLMResource(role="student")}
    store = LineageStore(magnet_home / "lineage.duckdb")
    timings = {}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tool_sets", ["tiny"])
        dg.materialize(PIPELINE + CHECKS, instance=instance, partition_key="tiny", resources=fake)
        for asset, config in ((base_student, {}),
                              (student_training, {"sft_max_steps": 2, "dpo_max_steps": 2, "batch_size": 1,
                                                  "max_length": 2048, "sft_learning_rate": 1e-4})):
            started = time.monotonic()
            dg.materialize([asset], instance=instance, resources=real,
                           run_config={"ops": {asset.key.path[-1]: {"config": config}}})
            timings[asset.key.path[-1]] = time.monotonic() - started
        trained = magnet_home / "checkpoints" / "student"
        assert read_provenance(trained)["tool_sets"] == ["tiny"]
        started = time.monotonic()
        result = dg.materialize([student_evaluation], instance=instance, partition_key="tiny", resources=real,
                                run_config={"ops": {"student_evaluation": {
                                    "config": {"checkpoint": "student", "max_steps_per_turn": 3}}}})
        timings["student_evaluation (vLLM start included)"] = time.monotonic() - started
    rows = store.query("SELECT student_model, checkpoint, mode, verdict FROM eval_results WHERE run_id = ?",
                       [result.run_id])
    assert rows, "the test split was scored"
    assert {(r["student_model"], r["checkpoint"]) for r in rows} == {(served_name(trained), str(trained))}
    assert {r["mode"] for r in rows} == {"teacher_forced", "free_running"}
    (run,) = store.query("SELECT losses FROM training_runs")
    assert run["losses"]
    with capsys.disabled():
        print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
              + f"; {sum(r['verdict'] for r in rows)} of {len(rows)} test turns correct")
