"""The one Definitions object: `dagster ... -m magnet_dagster.definitions`."""

import dagster as dg

from magnet_dagster.defs.bfcl import bfcl_multi_turn
from magnet_dagster.defs.catalog import function_catalog
from magnet_dagster.defs.evaluation import student_evaluation
from magnet_dagster.defs.graph import function_graph
from magnet_dagster.defs.jobs import evaluation_job, magnet_pipeline, train_and_evaluate
from magnet_dagster.defs.paths import signature_paths
from magnet_dagster.defs.queries import no_bfcl_contamination, queries
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.defs.schedules import nightly_evaluation
from magnet_dagster.defs.sensors import tool_set_sensor
from magnet_dagster.defs.splits import exports_are_clean, no_split_leakage, training_splits
from magnet_dagster.defs.training import base_student, student_comparison, student_training
from magnet_dagster.defs.trajectories import trajectories, yield_above_floor

defs = dg.Definitions(
    assets=[
        function_catalog,
        function_graph,
        signature_paths,
        queries,
        trajectories,
        training_splits,
        student_evaluation,
        bfcl_multi_turn,
        base_student,
        student_training,
        student_comparison,
    ],
    asset_checks=[no_bfcl_contamination, no_split_leakage, exports_are_clean, yield_above_floor],
    jobs=[magnet_pipeline, evaluation_job, train_and_evaluate],
    sensors=[tool_set_sensor],
    schedules=[nightly_evaluation],
    resources={
        "lineage": LineageStoreResource(),
        "teacher": LLMResource(role="teacher"),
        "student": LLMResource(role="student"),
    },
    # One process per run: the local model server starts once and serves every stage.
    executor=dg.in_process_executor,
)
