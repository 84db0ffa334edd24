"""A short, honest summary of one partition: rows per stage, yields, evaluation score, and
where every output is (the same paths the Dagster UI links from `training_splits`).

python -m magnet_dagster.report bfcl_demo
"""

from __future__ import annotations

import sys
from pathlib import Path

from magnet_dagster import config
from magnet_dagster.evaluation.comparison import side_by_side
from magnet_dagster.previews import funnel
from magnet_dagster.store.counts import stage_counts
from magnet_dagster.store.lineage import LineageStore, open_lineage_store
from magnet_dagster.synthesis.export import EVALUATION_PLOT, export_files

LAST_EVAL_SQL = """
WITH latest AS (SELECT run_id FROM eval_results WHERE tool_set = $1 ORDER BY created_at DESC LIMIT 1)
SELECT coalesce(mode, 'teacher_forced') AS mode, student_model, count(*) AS turns, sum(verdict::INT) AS correct
FROM eval_results WHERE tool_set = $1 AND run_id = (SELECT run_id FROM latest)
GROUP BY ALL ORDER BY mode
"""

#: the latest run that scored more than one checkpoint (`student_comparison`): its rows for this
#: tool set and for BFCL, with the models in the order they were scored (before, then after)
COMPARISON_SQL = """
WITH latest AS (
    SELECT run_id FROM eval_results WHERE checkpoint IS NOT NULL
    GROUP BY run_id HAVING count(DISTINCT checkpoint) > 1 ORDER BY max(created_at) DESC LIMIT 1
)
SELECT tool_set, mode, kind, categories, verdict, student_model, created_at
FROM eval_results WHERE run_id = (SELECT run_id FROM latest) AND tool_set IN ($1, 'bfcl')
ORDER BY created_at
"""

LLM_SQL = """
SELECT run_id, count(*) AS calls, sum(cache_hit::INT) AS cache_hits, sum((outcome <> 'ok')::INT) AS errors
FROM llm_calls WHERE tool_set = ? GROUP BY run_id ORDER BY max(created_at) DESC LIMIT 1
"""


#: how the report names each export file
FILE_LABELS = {
    "sft_jsonl": "SFT, JSONL",
    "sft_parquet": "SFT, Parquet",
    "preference_jsonl": "preference pairs, JSONL",
    "preference_parquet": "preference pairs, Parquet",
    "dataset_card": "dataset card",
}


def file_lines(tool_set: str, lineage_db: Path) -> list[str]:
    """Where each output lives, one line each; a file not written yet says so."""
    directory = config.exports_dir(tool_set)
    width = max(len(label) for label in FILE_LABELS.values())
    lines = ["  files:", f"    {'lineage DB'.ljust(width)} : {lineage_db}"]
    for key, path in export_files(directory).items():
        missing = "" if path.exists() else "  (not written yet)"
        lines.append(f"    {FILE_LABELS[key].ljust(width)} : {path}{missing}")
    plots = sorted(p.name for p in directory.glob("*.png")) if directory.is_dir() else []
    lines.append(f"    {'plots'.ljust(width)} : " + (f"{directory}/ ({', '.join(plots)})" if plots else "none yet"))
    if EVALUATION_PLOT not in plots:
        lines.append(f"    {''.ljust(width)}   ({EVALUATION_PLOT} appears once student_evaluation has run)")
    return lines


def comparison_lines(rows: list[dict]) -> list[str]:
    """The before/after table of the latest `student_comparison`, one line per group."""
    if not rows:
        return []
    models = list(dict.fromkeys(r["student_model"] for r in rows))
    lines = ["  before/after training (latest student_comparison): " + " -> ".join(models)]
    for r in side_by_side(rows, models):
        cells = " | ".join(r[m] for m in models)
        lines.append(f"    {r['tool set']}, {r['mode']}, {r['group']}: {cells}")
    return lines


def summary(tool_set: str, store: LineageStore) -> str:
    c = stage_counts(store, tool_set)
    ev = store.query(LAST_EVAL_SQL, [tool_set])
    llm = store.query(LLM_SQL, [tool_set])
    lines = [
        f"magnet-dagster summary for tool set {tool_set!r}",
        f"  catalog    : {c['functions']} functions kept, {c['rejected_functions']} rejected",
        f"  graph      : {funnel(c['graph_edges'], c['judged_pairs'], 'judged pairs became edges')}",
        f"  paths      : {c['paths']} signature paths",
        f"  queries    : {funnel(c['paths_with_queries'], c['paths'], 'paths kept')} after back-and-forth "
        f"translation, {c['turns']} turns",
        f"  trajectories: {funnel(c['trajectories'], c['paths_with_queries'], 'paths distilled')}; "
        f"{c['preference_pairs']} preference pairs",
        f"  splits     : train {c['train']}, validation {c['validation']}, test {c['test']}",
    ]
    for e in ev:
        lines.append(
            f"  evaluation : {e['student_model']} ({e['mode']}): "
            f"{funnel(int(e['correct'] or 0), e['turns'], 'test turns correct')}"
        )
    if not ev:
        lines.append("  evaluation : none yet")
    lines += comparison_lines(store.query(COMPARISON_SQL, [tool_set]))
    if llm:
        latest = llm[0]
        lines.append(
            f"  LLM (latest run): {latest['calls']} calls, {latest['cache_hits']} cache hits, {latest['errors']} errors"
        )
    lines += file_lines(tool_set, store.path)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m magnet_dagster.report TOOL_SET", file=sys.stderr)
        return 2
    print(summary(args[0], open_lineage_store()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
