"""LLM backends, response parsing, cache, concurrency and retries (no Dagster here)."""
