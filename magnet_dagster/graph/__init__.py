"""The function graph, random walks and node operations (no Dagster here)."""
