"""Jobs the sensor and the schedule launch."""

import dagster as dg

magnet_pipeline = dg.define_asset_job(
    "magnet_pipeline",
    selection=dg.AssetSelection.assets(
        "function_catalog",
        "function_graph",
        "signature_paths",
        "queries",
        "trajectories",
        "training_splits",
        "student_evaluation",
    ),
    description="The whole Magnet pipeline for one tool set.",
)

evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.assets("student_evaluation"),
    description="Re-evaluate the student on a tool set's test split.",
)

train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.assets("base_student", "student_training", "student_comparison"),
    description="Convert the base student, train it on the exports (SFT, then DPO), and score the base "
    "and the trained checkpoint side by side on the same test turns and BFCL entries (both served by vLLM).",
)
