"""A partition's stored rows read back for the next stage: the one place rows become inputs.

Each function reads one partition only (`tool_set = ?`), so a stage never sees another
tool set's rows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.spec import FunctionSpec

EDGES_WITH_NAMES = """
SELECT e.edge_id, e.relation, e.reason, coalesce(e.mapping, '{}'::JSON) AS mapping, coalesce(e.nested, false) AS nested,
       e.llm_call_id, s.name AS source, t.name AS target
FROM graph_edges e
JOIN functions s ON s.tool_set = e.tool_set AND s.function_id = e.source_id
JOIN functions t ON t.tool_set = e.tool_set AND t.function_id = e.target_id
WHERE e.tool_set = ?
ORDER BY e.edge_id
"""

#: `t.*` carries `turn_meta` (per user turn: kind, missing, functions, holdout); NULL on older rows
TEST_SPLIT_SQL = """
SELECT t.*, list_append(p.operations, coalesce(p.shape, 'multi_turn')) AS operations FROM trajectories t
JOIN splits s ON s.tool_set = t.tool_set AND s.trajectory_id = t.trajectory_id
JOIN paths p ON p.tool_set = t.tool_set AND p.path_id = t.path_id
WHERE t.tool_set = ? AND s.split = 'test'
ORDER BY t.trajectory_id
"""


class MissingCatalog(LookupError):
    """A stage ran before `function_catalog` stored the partition."""


def catalog_row(store: LineageStore, tool_set: str) -> dict[str, Any]:
    rows = store.query("SELECT options, executor FROM tool_sets WHERE tool_set = ?", [tool_set])
    if not rows:
        raise MissingCatalog(f"tool set {tool_set!r} has no catalog yet: materialize function_catalog first")
    return rows[0]


def load_executor(store: LineageStore, tool_set: str) -> dict[str, Any]:
    """How the tool set's functions run (`{"kind": "bfcl", ...}` / simulated), as the catalog found it."""
    return catalog_row(store, tool_set)["executor"]


def load_specs(store: LineageStore, tool_set: str) -> dict[str, FunctionSpec]:
    return {r["name"]: FunctionSpec.from_row(r) for r in store.rows("functions", tool_set, "name")}


def load_edges(store: LineageStore, tool_set: str) -> list[dict[str, Any]]:
    """Judged pairs with source and target names and parameter `mapping`, for `build_graph` / `edge_mappings`."""
    return store.query(EDGES_WITH_NAMES, [tool_set])


def load_turns_by_path(store: LineageStore, tool_set: str) -> dict[str, list[dict[str, Any]]]:
    by_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in store.rows("turns", tool_set, "path_id, turn_index"):
        by_path[r["path_id"]].append(r)
    return dict(by_path)


def load_test_split(store: LineageStore, tool_set: str) -> list[dict[str, Any]]:
    """Test trajectories, each with its path's operations and shape (for breakdowns) and its
    `turn_meta` (None for rows stored before it existed: evaluation then scores as before)."""
    rows = store.query(TEST_SPLIT_SQL, [tool_set])
    for row in rows:
        row.setdefault("turn_meta", None)
    return rows
