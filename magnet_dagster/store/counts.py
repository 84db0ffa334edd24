"""Row counts per stage for one partition: the numbers behind yields, the summary and the card."""

from __future__ import annotations

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
