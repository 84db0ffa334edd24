"""Row counts per stage for one partition: the numbers behind yields, the summary and the card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from magnet_dagster.store.lineage import LineageStore

STAGE_COUNTS_SQL = """
SELECT
  (SELECT count(*) FROM functions WHERE tool_set = $1) AS functions,
  (SELECT count(*) FROM rejected_functions WHERE tool_set = $1) AS rejected_functions,
  (SELECT count(*) FROM graph_edges WHERE tool_set = $1) AS judged_pairs,
  (SELECT count(*) FROM graph_edges WHERE tool_set = $1 AND relation <> 'none') AS graph_edges,
  (SELECT count(*) FROM paths WHERE tool_set = $1) AS paths,
  (SELECT count(DISTINCT path_id) FROM turns WHERE tool_set = $1) AS paths_with_queries,
  (SELECT count(*) FROM turns WHERE tool_set = $1) AS turns,
  (SELECT count(*) FROM trajectories WHERE tool_set = $1) AS trajectories,
  (SELECT count(*) FROM preference_pairs WHERE tool_set = $1) AS preference_pairs,
  (SELECT count(*) FROM splits WHERE tool_set = $1 AND split = 'train') AS train,
  (SELECT count(*) FROM splits WHERE tool_set = $1 AND split = 'validation') AS validation,
  (SELECT count(*) FROM splits WHERE tool_set = $1 AND split = 'test') AS test
"""


def stage_counts(store: LineageStore, tool_set: str) -> dict[str, int]:
    return store.query(STAGE_COUNTS_SQL, [tool_set])[0]


def stage_yields(counts: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(in, out) per stage, in the order the pipeline runs."""
    c = counts
    return {
        "catalog (functions kept)": (c["functions"] + c["rejected_functions"], c["functions"]),
        "graph (pairs judged an edge)": (c["judged_pairs"], c["graph_edges"]),
        "queries (paths kept)": (c["paths"], c["paths_with_queries"]),
        "trajectories (paths distilled)": (c["paths_with_queries"], c["trajectories"]),
    }


#: per node operation (and shape), how many paths reach each stage
OPERATION_SURVIVAL_SQL = """
WITH ops AS (
  SELECT DISTINCT path_id, unnest(list_append(operations, coalesce(shape, 'multi_turn'))) AS operation
  FROM paths WHERE tool_set = $1
)
SELECT o.operation,
       count(DISTINCT o.path_id) AS paths,
       count(DISTINCT q.path_id) AS with_queries,
       count(DISTINCT d.path_id) AS distilled,
       count(DISTINCT s.path_id) AS exported
FROM ops o
LEFT JOIN (SELECT DISTINCT path_id FROM turns WHERE tool_set = $1) q ON q.path_id = o.path_id
LEFT JOIN (SELECT path_id FROM trajectories WHERE tool_set = $1) d ON d.path_id = o.path_id
LEFT JOIN (SELECT path_id FROM splits WHERE tool_set = $1) s ON s.path_id = o.path_id
GROUP BY o.operation ORDER BY o.operation
"""

REJECTIONS_SQL = """
SELECT stage, rule, count(*) AS paths FROM path_rejections WHERE tool_set = $1
GROUP BY stage, rule ORDER BY paths DESC, stage, rule
"""


def operation_survival(store: LineageStore, tool_set: str) -> list[dict[str, Any]]:
    return store.query(OPERATION_SURVIVAL_SQL, [tool_set])


def rejections_by_rule(store: LineageStore, tool_set: str) -> list[dict[str, Any]]:
    return store.query(REJECTIONS_SQL, [tool_set])


@dataclass
class PartitionCounts:
    """Everything the card and the splits metadata count for one tool set."""

    stages: dict[str, int]
    survival: list[dict[str, Any]]
    rejections: list[dict[str, Any]]


def partition_counts(store: LineageStore, tool_set: str) -> PartitionCounts:
    return PartitionCounts(
        stage_counts(store, tool_set), operation_survival(store, tool_set), rejections_by_rule(store, tool_set)
    )
