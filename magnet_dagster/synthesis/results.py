"""What translation and distillation hand back, and their one stored form.

Both stages answer per path with either their product or one `PathRejection` that names
the stage, the turn, the rule and the reason; the `turns` and `path_rejections` rows are
built here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.spec import FunctionSpec, stable_id

QUERIES, TRAJECTORIES = "queries", "trajectories"


@dataclass(frozen=True)
class Partition:
    """One tool set's run, as the translation and distillation stages see it."""

    tool_set: str
    run_id: str
    specs: dict[str, FunctionSpec]
    options: SynthesisOptions
    #: (source, target) function names -> {target parameter: source output field}, from the graph
    mappings: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PathRejection:
    """Why a path was dropped: at which stage and turn, under which rule."""

    stage: str
    turn_index: int
    rule: str
    reason: str

    def as_row(self, tool_set: str, run_id: str, path_id: str) -> dict[str, Any]:
        return {
            "tool_set": tool_set,
            "run_id": run_id,
            "path_id": path_id,
            "stage": self.stage,
            "turn_index": self.turn_index,
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass
class TurnResult:
    """One translated turn: the user's query, the reference calls and what they returned."""

    index: int
    kind: str
    functions: tuple[str, ...]
    query: str
    calls: list[ToolCall] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    attempts: int = 1
    llm_call_ids: list[str] = field(default_factory=list)
    simulated: bool = False
    #: calls per assistant step, in order (`calls` is their concatenation): a call that needs an
    #: earlier call's output is its own step, after that output; independent calls share a step
    step_sizes: list[int] = field(default_factory=list)
    #: `miss_params`: the parameter the query leaves out (the assistant must ask for it)
    missing: tuple[str, ...] = ()
    #: `miss_params`: the left-out value, for the next turn's user to give (not stored)
    pending: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def steps(self) -> list[tuple[list[ToolCall], list[Any]]]:
        """(calls, outputs) of each assistant step; one step when sizes were not recorded."""
        sizes = self.step_sizes or ([len(self.calls)] if self.calls else [])
        out, start = [], 0
        for size in sizes:
            out.append((self.calls[start : start + size], self.outputs[start : start + size]))
            start += size
        return out

    def as_row(self, tool_set: str, run_id: str, path_id: str, function_ids: dict[str, str]) -> dict[str, Any]:
        """The `turns` row; `function_ids` maps names to the catalog's ids."""
        return {
            "turn_id": stable_id(tool_set, path_id, self.index),
            "tool_set": tool_set,
            "run_id": run_id,
            "path_id": path_id,
            "turn_index": self.index,
            "kind": self.kind,
            "function_ids": [function_ids[f] for f in self.functions],
            "query": self.query,
            "calls": [c.as_dict() for c in self.calls],
            "outputs": self.outputs,
            "tools": self.tools,
            "attempts": self.attempts,
            "llm_call_ids": self.llm_call_ids,
            "simulated": self.simulated,
            "step_sizes": self.step_sizes,
            "missing": list(self.missing),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any], names: dict[str, str]) -> TurnResult:
        """A stored turn back; `names` maps function ids to names."""
        return cls(
            index=row["turn_index"],
            kind=row["kind"],
            functions=tuple(names[f] for f in row["function_ids"] or []),
            query=row["query"],
            calls=[ToolCall.from_dict(c) for c in row["calls"] or []],
            outputs=row["outputs"] or [],
            tools=row["tools"] or [],
            attempts=row.get("attempts") or 1,
            llm_call_ids=row.get("llm_call_ids") or [],
            simulated=bool(row.get("simulated")),
            step_sizes=list(row.get("step_sizes") or []),
            missing=tuple(row.get("missing") or ()),
        )
