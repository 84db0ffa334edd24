"""Checkers and the student runner (no Dagster here)."""
