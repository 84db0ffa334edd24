"""Synthesis options per tool set (from its `toolset.yaml`), with the paper's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from magnet_dagster.graph.paths import SHAPES
from magnet_dagster.tools.spec import ToolSetError

#: shares of the synthesized set by shape (the paper mixes single-turn examples in)
DEFAULT_MIX = {"multi_turn": 0.6, "single": 0.1, "parallel": 0.1, "multiple": 0.1, "irrelevance": 0.1}


@dataclass(frozen=True)
class SynthesisOptions:
    candidates_per_function: int = 30  # k
    walk_steps: int = 7  # S
    walks_per_node: int = 1
    merge_p: float = 0.3
    insert_p: float = 0.3
    split_p: float = 0.2
    distractor_tools: int = 2
    max_attempts: int = 3
    negatives: bool = True
    #: shares of multi_turn / single / parallel / multiple / irrelevance examples (sum 1)
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    #: drop a turn unless an independent forward translation of its final query, offered
    #: every tool of the turn, reproduces the reference calls (AST match); costs one call a turn
    round_trip: bool = False
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    #: an asset fails when more than this share of its LLM calls fail after retries
    max_llm_failure_rate: float = 0.5
    #: the `yield_above_floor` check warns when trajectories / paths falls below this
    min_yield: float = 0.01

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, source: str = "toolset.yaml") -> SynthesisOptions:
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ToolSetError(f"{source}: unknown option(s) {unknown}; known: {sorted(known)}")
        if "split_fractions" in data:
            fr = tuple(float(x) for x in data["split_fractions"])
            if len(fr) != 3 or abs(sum(fr) - 1.0) > 1e-6 or min(fr) < 0:
                raise ToolSetError(f"{source}: split_fractions must be three non-negative numbers summing to 1")
            data["split_fractions"] = fr
        if "mix" in data:
            data["mix"] = _mix(data["mix"], source)
        for name in ("merge_p", "insert_p", "split_p"):
            if name in data and not 0.0 <= float(data[name]) <= 1.0:
                raise ToolSetError(f"{source}: {name} must be between 0 and 1")
        return cls(**data)


def _mix(value: Any, source: str) -> dict[str, float]:
    """Shapes not named get 0; shares must be non-negative and sum to 1."""
    if not isinstance(value, dict) or set(value) - set(SHAPES):
        raise ToolSetError(f"{source}: mix must map some of {list(SHAPES)} to shares")
    mix = {shape: float(value.get(shape, 0.0)) for shape in SHAPES}
    if min(mix.values()) < 0 or abs(sum(mix.values()) - 1.0) > 1e-6:
        raise ToolSetError(f"{source}: mix shares must be non-negative and sum to 1, got {mix}")
    return mix
