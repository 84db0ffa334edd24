"""Estimated cost of a run's LLM calls, for asset metadata.

List prices in USD per million tokens (input, output), as published for on-demand use when
this table was written; override or extend with `MAGNET_PRICES_PER_MTOK`, a JSON object
`{"model": [input, output]}`. Models served locally cost nothing here; unknown models
are reported as unknown rather than guessed.
"""

from __future__ import annotations

import json
import os

LIST_PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-pro": (1.25, 10.00),
}
FREE_BACKENDS = frozenset({"local", "vllm", "fake"})


def estimated_cost_usd(backend: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
    if backend in FREE_BACKENDS:
        return 0.0
    prices = dict(LIST_PRICES_PER_MTOK)
    prices.update({k: tuple(v) for k, v in json.loads(os.environ.get("MAGNET_PRICES_PER_MTOK", "{}")).items()})
    if model not in prices:
        return None
    p_in, p_out = prices[model]
    return round((input_tokens * p_in + output_tokens * p_out) / 1e6, 6)
