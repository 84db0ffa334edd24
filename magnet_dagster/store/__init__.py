"""The DuckDB lineage store (no Dagster here)."""

from magnet_dagster.store.lineage import LineageStore

__all__ = ["LineageStore"]
