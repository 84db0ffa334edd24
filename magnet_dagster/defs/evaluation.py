"""Stage 7, `student_evaluation`: the student replays the test split, turn by turn.

Teacher-forced always (every reference step asked for with the reference history up to it);
free-running too when the tool set's functions really execute: the student takes up to
`max_steps_per_turn` steps per turn (BFCL's 20), its calls run through the dispatcher and
their results are fed back, and each call turn is judged like BFCL's checker (the tools'
state, and the reference's results among the student's), with the strict per-call AST
match reported beside it. Held-out functions arrive as BFCL adds them. Appends to
`eval_results` (one row per turn and mode: expected, got, verdict, reason, student model,
run id; `got` carries the strict match and the steps taken), so re-evaluations accumulate
and the trend stays visible. Writes the scores plot (`evaluation_scores.png`) beside the
exports, where the dataset card names it. The schedule `nightly_evaluation` reruns it for every partition.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from magnet_dagster.config import exports_dir
from magnet_dagster.defs.common import images, run_with_llm, table, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.evaluation.runner import MAX_STEPS_PER_TURN, evaluate
from magnet_dagster.evaluation.scoring import summarise, verdict_row
from magnet_dagster.figures import Plot, scores_plot
from magnet_dagster.previews import compact_calls, funnel, rate, shorten, spread
from magnet_dagster.store.loaders import load_executor, load_specs, load_test_split
from magnet_dagster.tools.executors import ExecutorFactory

PREVIOUS_SQL = """
SELECT run_id, mode, student_model, count(*) AS turns, round(avg(verdict::INT), 4) AS turn_accuracy,
       max(created_at) AS evaluated_at
FROM eval_results WHERE tool_set = ? AND run_id <> ?
GROUP BY run_id, mode, student_model ORDER BY evaluated_at DESC LIMIT 10
"""


class EvaluationConfig(dg.Config):
    #: steps the student may take in one turn of free-running replay (BFCL's MAXIMUM_STEP_LIMIT)
    max_steps_per_turn: int = MAX_STEPS_PER_TURN
    #: a checkpoint to evaluate, served by vLLM: a name under $MAGNET_HOME/checkpoints (`base`, a
    #: training run's name) or a path; unset: the student backend MAGNET_STUDENT chooses
    checkpoint: str | None = None


@dg.asset(
    partitions_def=tool_sets, group_name="magnet_pipeline", deps=["training_splits"], kinds={"duckdb"}, pool="student"
)
def student_evaluation(
    context: dg.AssetExecutionContext, config: EvaluationConfig, lineage: LineageStoreResource, student: LLMResource
) -> dg.MaterializeResult:
    """Call accuracy (AST match), turn and conversation success, state match, on the test split."""
    key, store = context.partition_key, lineage.get()
    specs, tests = load_specs(store, key), load_test_split(store, key)
    factory = ExecutorFactory(load_executor(store, key), specs)
    with student.serving(config.checkpoint) as (backend, checkpoint):
        client = student.client(store, context, backend)
        verdicts, llm_meta = run_with_llm(
            context, client, lambda c: evaluate(c, tests, specs, factory, config.max_steps_per_turn), bound=1.0
        )
    rows = [verdict_row(v, key, context.run.run_id, client.model, checkpoint) for v in verdicts]
    store.append("eval_results", rows)
    summary = summarise(verdicts)
    context.log.info(f"{key}: {summary_line(summary)}")
    scores = scores_plot(summary)
    scores.write(exports_dir(key))
    previous = store.query(PREVIOUS_SQL, [key, context.run.run_id])
    return dg.MaterializeResult(
        metadata=evaluation_metadata(
            EvaluationView(client.model, len(tests), summary, rows, previous, scores, exports_dir(key), store.path)
        )
        | llm_meta
    )


@dataclass
class EvaluationView:
    """What the evaluation's metadata shows: the scores, the rows, earlier runs, the plot and
    where the plot and the lineage DB live."""

    model: str
    tests: int
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    previous: list[dict[str, Any]]
    scores: Plot
    exports: Path
    lineage_db: Path


def _correct(rate_value: float | None, n: int) -> int:
    return round((rate_value or 0.0) * n)


def _modes(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """Teacher-forced first: it is the score every tool set has."""
    return sorted(summary.items(), key=lambda kv: (kv[0] != "teacher_forced", kv[0]))


def summary_line(summary: dict[str, Any]) -> str:
    """One line per mode: "teacher forced: 4 of 6 test turns correct (67%), 1 of 2 conversations (50%)"."""
    if not summary:
        return "no test turns (the test split is empty)"
    parts = []
    for mode, s in _modes(summary):
        turns, convs = s["turns"], s["conversations"]
        parts.append(
            f"{mode.replace('_', ' ')}: "
            + funnel(_correct(s["turn_accuracy"], turns), turns, "test turns correct")
            + ", "
            + funnel(_correct(s["conversation_accuracy"], convs), convs, "conversations")
        )
    return "; ".join(parts)


def _calls(value: Any) -> str:
    return compact_calls(value.get("calls")) if isinstance(value, dict) else shorten(value or "—", 80)


def _mode(mode: str) -> str:
    return mode.replace("_", " ")


def _result(row: dict[str, Any]) -> str:
    """`✓ fn(a=1)` for a correct turn; `✗ reason. expected ...; got ...` for a wrong one (the
    reason first: it is what a cut cell must still show)."""
    if row["verdict"]:
        return "✓ " + _calls(row["got"])
    reason = (row["reason"] or "wrong").rstrip(".")
    return shorten(f"✗ {reason}. expected {_calls(row['expected'])}; got {_calls(row['got'])}", 160)


#: the summary's rows: (label, key, as a rate)
SUMMARY_ROWS = (
    ("conversations", "conversations", False),
    ("turns", "turns", False),
    ("turn accuracy", "turn_accuracy", True),
    ("conversation accuracy", "conversation_accuracy", True),
    ("strict turn accuracy", "strict_turn_accuracy", True),
    ("state match", "state_match", True),
    ("steps per call turn", "steps_per_call_turn", False),
    ("forced quits", "forced_quits", False),
)


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measure, one column per mode: narrow enough for the UI's metadata column."""
    modes = _modes(summary)
    return [
        {"measure": label} | {_mode(m): rate(s.get(key)) if is_rate else s.get(key) for m, s in modes}
        for label, key, is_rate in SUMMARY_ROWS
    ]


def group_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn accuracy by turn kind, category and node operation: one row per group, one column per mode."""
    modes = _modes(summary)
    keys = dict.fromkeys(
        (group, value) for _, s in modes for group in ("by_kind", "by_category", "by_operation") for value in s[group]
    )
    return [
        {"group": f"{group.removeprefix('by_')}: {value}"}
        | {_mode(m): f"{rate(g['accuracy'])} of {g['turns']}" if (g := s[group].get(value)) else "—" for m, s in modes}
        for group, value in keys
    ]


def evaluation_metadata(view: EvaluationView) -> dict:
    """Funnel line (test turns correct, per mode) first, the scores as tables and a plot, links
    to the exports (where the plot is written) and the lineage DB, earlier runs, and a preview
    across modes, kinds and verdicts."""
    summary, rows = view.summary, view.rows
    forced, free = summary.get("teacher_forced", {}), summary.get("free_running", {})
    sample = spread(rows, lambda r: (r["mode"], r["kind"], bool(r["verdict"])))
    preview = [{"turn": f"{_mode(r['mode'])}, {r['kind']} #{r['turn_index']}", "result": _result(r)} for r in sample]
    previous = [
        {
            "evaluated": str(p["evaluated_at"])[:16],
            "mode": _mode(p["mode"] or "teacher_forced"),
            "student": p["student_model"],
            "turn accuracy": f"{rate(p['turn_accuracy'])} of {p['turns']}",
        }
        for p in view.previous
    ]
    return {
        "funnel": summary_line(summary),
        "dagster/row_count": len(rows),
        "student_model": view.model,
        "test_conversations": view.tests,
        "turn_accuracy": rate(forced.get("turn_accuracy")),
        "conversation_accuracy": rate(forced.get("conversation_accuracy")),
        **(
            {
                "free_running": f"{rate(free.get('turn_accuracy'))} of turns "
                f"({rate(free.get('strict_turn_accuracy'))} by strict AST match)"
            }
            if free
            else {}
        ),
        "summary": table(summary_rows(summary)),
        "scores_plot": images(view.scores),
        "scores_by_group": table(group_rows(summary), limit=40),
        "exports": dg.MetadataValue.path(str(view.exports)),
        "lineage_db": dg.MetadataValue.path(str(view.lineage_db)),
        "previous_evaluations": table(previous),
        "preview": table(preview, width=160),
    }
