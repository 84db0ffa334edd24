"""Back-and-forth translation, context distillation, splits and exports (no Dagster here)."""
