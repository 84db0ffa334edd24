"""The `training` group through `dg.materialize`: `student_training` really trains (TRL on a tiny
random Llama, seconds) on exports the pipeline made with the schema-following fake teacher;
`student_comparison` scores two checkpoints with a fake student per checkpoint (a fake, named
as one, standing in for vLLM: the real vLLM path is tests/defs/test_training_vllm.py).
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.defs.training import student_comparison, student_training
from magnet_dagster.llm.client import Backend
from magnet_dagster.report import summary
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.training.checkpoints import checkpoint_path
from tests.conftest import write_tiny_bfcl_tool_set
from tests.defs.test_assets_fast import CHECKS, PIPELINE, FakeLLMResource
from tests.fake_teacher import SchemaFollowingFake
from tests.training.tiny_model import build_tiny_model


class FakeServingResource(FakeLLMResource):
    """The student resource with a schema-following fake per checkpoint instead of a vLLM server."""

    @contextmanager
    def serving(self, checkpoint: str | None) -> Iterator[tuple[Backend | None, str | None]]:
        if checkpoint is None:
            yield None, None
            return
        path = checkpoint_path(checkpoint)
        yield SchemaFollowingFake(model=f"{path.name}@fake"), str(path)


RESOURCES = {"lineage": LineageStoreResource(), "teacher": FakeLLMResource(role="teacher"),
             "student": FakeServingResource(role="student")}
#: enough functions that the fake teacher's trajectories give the train split pairs as well
FUNCTIONS = ["add", "subtract", "multiply", "divide", "power", "square_root", "absolute_value", "round_number"]
TRAIN = {"base_model": "tiny-base", "name": "tiny-student", "sft_max_steps": 2, "dpo_max_steps": 2,
         "max_length": 2048, "batch_size": 1}


@pytest.fixture
def trained(magnet_home, tool_sets_dir) -> Iterator[tuple[dg.DagsterInstance, LineageStore]]:
    write_tiny_bfcl_tool_set(tool_sets_dir, "tiny", FUNCTIONS)
    build_tiny_model(magnet_home / "checkpoints" / "tiny-base")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tool_sets", ["tiny"])
        dg.materialize(PIPELINE + CHECKS, instance=instance, partition_key="tiny", resources=RESOURCES)
        dg.materialize([student_training], instance=instance, resources=RESOURCES,
                       run_config={"ops": {"student_training": {"config": TRAIN}}})
        yield instance, LineageStore(magnet_home / "lineage.duckdb")


def test_training_writes_a_checkpoint_and_records_every_row_it_trained_on(trained, magnet_home):
    instance, store = trained
    out = magnet_home / "checkpoints" / "tiny-student"
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))
    assert "generation" in (out / "chat_template.jinja").read_text() or (out / "tokenizer_config.json").is_file()
    (run,) = store.query("SELECT * FROM training_runs")
    assert run["checkpoint"] == str(out) and run["tool_sets"] == ["tiny"]
    losses = json.loads(run["losses"]) if isinstance(run["losses"], str) else run["losses"]
    assert [p["step"] for p in losses["sft"]] == [1, 2]
    used = store.query("SELECT phase, trajectory_id, pair_id, tool_set FROM training_rows")
    train = {r["trajectory_id"] for r in store.query(
        "SELECT trajectory_id FROM splits WHERE tool_set = 'tiny' AND split = 'train'")}
    assert {r["trajectory_id"] for r in used if r["phase"] == "sft"} <= train
    assert {r["phase"] for r in used} >= {"sft"} and {r["tool_set"] for r in used} == {"tiny"}
    assert any(r["phase"] == "dpo" for r in used), "the fake's trajectories come with preference pairs"
    assert [p["step"] for p in losses["dpo"]] == [1, 2]
    meta = instance.get_latest_materialization_event(dg.AssetKey("student_training")).asset_materialization.metadata
    assert "data:image/png;base64," in meta["loss_plot"].value
    assert meta["summary"].value.startswith("sft: ")


def test_comparison_scores_both_checkpoints_on_the_same_items_side_by_side(trained, magnet_home):
    instance, store = trained
    result = dg.materialize([student_comparison], instance=instance, resources=RESOURCES, run_config={
        "ops": {"student_comparison": {"config": {"before": "tiny-base", "bfcl_entries_per_category": 1,
                                                  "bfcl_categories": ["multi_turn_base"]}}}})
    rows = store.query("SELECT student_model, checkpoint, tool_set, trajectory_id, turn_index, mode FROM eval_results "
                       "WHERE run_id = ?", [result.run_id])
    models = {r["student_model"]: r["checkpoint"] for r in rows}
    assert models == {"tiny-base@fake": str(magnet_home / "checkpoints" / "tiny-base"),
                      "tiny-student@fake": str(magnet_home / "checkpoints" / "tiny-student")}
    items = {m: sorted((r["tool_set"], r["trajectory_id"], r["turn_index"], r["mode"]) for r in rows
                       if r["student_model"] == m) for m in models}
    assert items["tiny-base@fake"] == items["tiny-student@fake"], "the same turns and entries for both"
    assert {r["tool_set"] for r in rows} == {"tiny", "bfcl"}
    meta = result.asset_materializations_for_node("student_comparison")[0].metadata
    assert meta["before"].value == "tiny-base@fake" and meta["after"].value == "tiny-student@fake"
    table = meta["side_by_side"].value
    assert {"tiny-base@fake", "tiny-student@fake"} <= {c.name for c in table.schema.columns}
    text = summary("tiny", store)
    assert "before/after training" in text and "tiny-base@fake -> tiny-student@fake" in text


def test_a_missing_checkpoint_is_refused_before_any_server_starts(magnet_home):
    with pytest.raises(FileNotFoundError, match=r"checkpoints/nowhere does not exist"), \
            LLMResource(role="student").serving("nowhere"):
        pass


def test_comparison_without_a_trained_checkpoint_says_what_to_run(magnet_home):
    with dg.instance_for_test() as instance:
        result = dg.materialize([student_comparison], instance=instance, resources=RESOURCES, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "materialize student_training first" in failure.step_failure_data.user_failure_data.description


def test_every_training_knob_reaches_the_trainer_settings():
    from magnet_dagster.defs.training import TrainingConfig, training_settings

    config = TrainingConfig(sft_epochs=0.5, dpo_loss_type="ipo", lora=True, gradient_checkpointing=True, seed=7)
    settings = training_settings(config)
    assert (settings.sft_epochs, settings.dpo_loss_type, settings.lora, settings.gradient_checkpointing,
            settings.seed) == (0.5, "ipo", True, True, 7)
    assert settings.base_model.name == "base"
