"""Which arguments of a turn's calls come from earlier outputs, and in which step each call runs.

The graph's edges carry a parameter mapping (`{target parameter: source output field}`; `"$"` is
the whole output). A call whose mapped source ran earlier in the conversation, or earlier in the
same turn, takes that argument from the source's real output: the argument is never suggested
as a literal, never stated by the user, and must equal the output's value. Within a turn, a
call that depends on another call of the turn is translated in a later step, after that call
has run; independent calls (Merge, parallel) share a step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from magnet_dagster.graph.paths import Turn
from magnet_dagster.tools.calls import ToolCall

Mappings = dict[tuple[str, str], dict[str, str]]
WHOLE_OUTPUT = "$"


@dataclass(frozen=True)
class Dependency:
    """`parameter` of the calling function takes `field` of `source`'s latest output."""

    parameter: str
    source: str
    field: str


def call_steps(turn: Turn, mappings: Mappings) -> list[list[int]]:
    """Indices into `turn.functions`, grouped by step: a function goes one step after the latest
    function of the same turn it depends on (a nested pair or a mapped edge), else in step 0."""
    nested = set(turn.nested)
    level: list[int] = []
    for j, f in enumerate(turn.functions):
        deps = [i for i in range(j) if (turn.functions[i], f) in nested or mappings.get((turn.functions[i], f))]
        level.append(1 + max(level[i] for i in deps) if deps else 0)
    return [[j for j, lv in enumerate(level) if lv == s] for s in range(max(level) + 1)] if level else []


def dependencies(function: str, earlier: list[str], mappings: Mappings) -> list[Dependency]:
    """The mapped parameters of `function`, each from the latest function in `earlier` that maps it."""
    found: dict[str, Dependency] = {}
    for source in earlier:  # in call order: a later source wins
        for parameter, field in (mappings.get((source, function)) or {}).items():
            found[parameter] = Dependency(parameter, source, field)
    return list(found.values())


def output_value(output: Any, field: str) -> tuple[bool, Any]:
    """(found, value) of `field` in a call's output (`"$"`: the output itself)."""
    if field == WHOLE_OUTPUT:
        return True, output
    if isinstance(output, dict) and field in output:
        return True, output[field]
    return False, None


def dependency_problem(call: ToolCall, deps: list[Dependency], latest: dict[str, Any]) -> str | None:
    """Why `call` does not take its mapped arguments from the sources' real outputs, or None.

    `latest` maps a function name to its latest output. A mapping whose field the real output
    lacks cannot be checked, so it binds nothing.
    """
    for dep in deps:
        if dep.source not in latest:
            continue
        found, expected = output_value(latest[dep.source], dep.field)
        if not found:
            continue
        got = call.arguments.get(dep.parameter)
        if got != expected:
            return (
                f"{call.name}.{dep.parameter} = {json.dumps(got)[:80]}, but {dep.source}'s output "
                f"{dep.field} is {json.dumps(expected)[:80]}"
            )
    return None


def _distinctive(value: Any) -> str | None:
    """`value` as the user would write it, if it is distinctive enough to spot in a sentence
    (strings of 3+ characters, numbers of 2+ digits), else None."""
    if isinstance(value, str) and len(value.strip()) >= 3:
        return value.strip().lower()
    if isinstance(value, int | float) and not isinstance(value, bool) and len(str(abs(value)).replace(".", "")) >= 2:
        return str(value)
    return None


def leaked_values(query: str, deps: list[Dependency], latest: dict[str, Any]) -> list[str]:
    """Mapped parameters whose earlier-output value the user's words state (they must not)."""
    text = query.lower()
    leaked = []
    for dep in deps:
        if dep.source not in latest:
            continue
        found, value = output_value(latest[dep.source], dep.field)
        written = _distinctive(value) if found else None
        if written is not None and written in text:
            leaked.append(dep.parameter)
    return leaked
