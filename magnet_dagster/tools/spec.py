"""FunctionSpec: the one normalised form of a tool, whatever format it came in."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

#: Python type names as BFCL docs and ToolBench response templates write them -> JSON Schema types
PYTHON_TYPE_NAMES = {
    "dict": "object",
    "float": "number",
    "tuple": "array",
    "list": "array",
    "int": "integer",
    "str": "string",
    "bool": "boolean",
}

TOOL_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: a ToolSetError message is cut to this many characters (it names the file first)
MAX_ERROR_CHARS = 1_000


class ToolSetError(ValueError):
    """A tool set (or one of its files) cannot be read at all; fails only its partition.

    The message is always one line (whitespace collapsed, e.g. a YAML error's context lines)
    and bounded, so it reads well in a Dagster failure, a log line or a table cell.
    """

    def __init__(self, message: object) -> None:
        text = " ".join(str(message).split())
        if len(text) > MAX_ERROR_CHARS:
            text = text[: MAX_ERROR_CHARS - 1] + "…"
        super().__init__(text)


@dataclass(frozen=True)
class Rejection:
    """Why one function (or one line of a JSONL file, or a file) of a tool set is not used."""

    name: str | None
    source_file: str | None
    rule: str
    reason: str

    def as_row(self, tool_set: str, run_id: str) -> dict[str, Any]:
        return {
            "tool_set": tool_set,
            "run_id": run_id,
            "name": self.name,
            "source_file": self.source_file,
            "rule": self.rule,
            "reason": self.reason,
        }


def check_tool_set_name(name: str) -> str:
    """Refuse names that are unsafe as partition keys and folder names.

    No path separators, no `..`, no control characters, at most 64 characters.
    """
    if not isinstance(name, str) or not TOOL_SET_NAME.fullmatch(name) or ".." in name:
        raise ToolSetError(
            f"tool set name {name!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, without '..', path separators or control characters"
        )
    return name


@dataclass(frozen=True)
class FunctionSpec:
    """A tool: its name, what it does, and JSON Schemas for its arguments and result."""

    name: str
    description: str
    parameters: dict[str, Any]
    returns: dict[str, Any] | None = None
    category: str | None = None
    tool: str | None = None
    source_file: str | None = None
    executable: bool = False
    #: `origin`: the names the source format used (kept in lineage); `problems`: (rule, reason)
    #: pairs a reader found that make the function unusable (validation rejects it with them)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.parameters.get("properties", {}))

    def function_id(self, tool_set: str) -> str:
        return stable_id(tool_set, self.name)

    def openai_tool(self) -> dict[str, Any]:
        """The OpenAI / TRL `tools` entry for this function."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def as_row(self, tool_set: str, run_id: str) -> dict[str, Any]:
        return {
            "function_id": self.function_id(tool_set),
            "tool_set": tool_set,
            "run_id": run_id,
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "returns": self.returns,
            "category": self.category,
            "tool": self.tool,
            "source_file": self.source_file,
            "executable": self.executable,
            "origin": self.extra.get("origin"),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FunctionSpec:
        return cls(
            name=row["name"],
            description=row.get("description") or "",
            parameters=row["parameters"],
            returns=row.get("returns"),
            category=row.get("category"),
            tool=row.get("tool"),
            source_file=row.get("source_file"),
            executable=bool(row.get("executable")),
            extra={"origin": row["origin"]} if row.get("origin") else {},
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def nesting_depth(value: Any, cap: int) -> int:
    """How deeply dicts and lists nest in `value` (a scalar is 0, `{}` is 1).

    Counted without recursion and never below `cap + 1` levels (the answer is then `cap + 1`,
    "more than cap"), so a hostile value of any depth is measured quickly and safely before
    anything recursive (JSON Schema checks, `repr`, `json.dumps`) touches it.
    """
    if not isinstance(value, (dict, list, tuple)):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > cap:
            return depth
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def stable_id(*parts: Any) -> str:
    """A short id that is the same on every rerun for the same parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
