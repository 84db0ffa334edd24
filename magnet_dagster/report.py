"""A short, honest summary of one partition: rows per stage, yields, evaluation score.

python -m magnet_dagster.report bfcl_demo
"""

from __future__ import annotations

import sys

from magnet_dagster import config
from magnet_dagster.store.counts import stage_counts
from magnet_dagster.store.lineage import LineageStore

LAST_EVAL_SQL = """
WITH latest AS (SELECT run_id FROM eval_results WHERE tool_set = $1 ORDER BY created_at DESC LIMIT 1)
SELECT coalesce(mode, 'teacher_forced') AS mode, student_model, count(*) AS turns, sum(verdict::INT) AS correct
FROM eval_results WHERE tool_set = $1 AND run_id = (SELECT run_id FROM latest)
GROUP BY ALL ORDER BY mode
"""

LLM_SQL = """
SELECT run_id, count(*) AS calls, sum(cache_hit::INT) AS cache_hits, sum((outcome <> 'ok')::INT) AS errors
FROM llm_calls WHERE tool_set = ? GROUP BY run_id ORDER BY max(created_at) DESC LIMIT 1
"""


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({n / d:.0%})" if d else f"{n}/0"


def summary(tool_set: str, store: LineageStore) -> str:
    c = stage_counts(store, tool_set)
    ev = store.query(LAST_EVAL_SQL, [tool_set])
    llm = store.query(LLM_SQL, [tool_set])
    lines = [
        f"magnet-dagster summary for tool set {tool_set!r}",
        f"  lineage DB : {store.path}",
        f"  exports    : {config.exports_dir(tool_set)}",
        f"  catalog    : {c['functions']} functions kept, {c['rejected_functions']} rejected",
        f"  graph      : {_pct(c['graph_edges'], c['judged_pairs'])} judged pairs became edges",
        f"  paths      : {c['paths']} signature paths",
        f"  queries    : {_pct(c['paths_with_queries'], c['paths'])} paths passed back-and-forth translation "
        f"({c['turns']} turns)",
        f"  trajectories: {_pct(c['trajectories'], c['paths_with_queries'])} distilled; "
        f"{c['preference_pairs']} preference pairs",
        f"  splits     : train {c['train']}, validation {c['validation']}, test {c['test']}",
    ]
    for e in ev:
        lines.append(
            f"  evaluation : {e['student_model']} ({e['mode']}): "
            f"{_pct(int(e['correct'] or 0), e['turns'])} test turns correct"
        )
    if not ev:
        lines.append("  evaluation : none yet")
    if llm:
        latest = llm[0]
        lines.append(
            f"  LLM (latest run): {latest['calls']} calls, {latest['cache_hits']} cache hits, {latest['errors']} errors"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m magnet_dagster.report TOOL_SET", file=sys.stderr)
        return 2
    print(summary(args[0], LineageStore(config.lineage_db_path())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
