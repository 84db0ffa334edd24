"""Python functions and classes as executable tools.

A target is `module`, `module:Class`, `file.py` or `file.py:Class` (a file relative to the
tool set's folder). Its public callables with type hints and a docstring are the tools:
parameters come from the hints, descriptions from the docstring (Google `Args:` or Sphinx
`:param x:`). A public callable without them is still listed, with the problem, so the
catalog rejects it by name instead of leaving the user to wonder where it went.

Execution loads a fresh copy of the module (and a new instance of the class) for every
conversation, so module globals and instance attributes never leak between conversations.
This runs the user's own code, which they put in their tool set; model text never runs.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import enum
import hashlib
import importlib.machinery
import importlib.util
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magnet_dagster.tools.spec import FunctionSpec, ToolSetError

PRIMITIVES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    dict: {"type": "object"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    set: {"type": "array"},
    Any: {},
}
SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?):\s*$")
GOOGLE_ARG = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
SPHINX_ARG = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


class UnsupportedHint(TypeError):
    """A type hint with no JSON Schema counterpart here."""


@dataclass(frozen=True)
class PythonTarget:
    """Where tools live: a module (import path or file) and optionally a class in it."""

    module: str
    attribute: str | None = None
    file: str | None = None
    states: tuple[dict[str, Any], ...] = ()

    @classmethod
    def parse(cls, entry: Any, base: Path, source: str) -> PythonTarget:
        """`"mod:Class"` or `{"target": "file.py:Class", "states": [...]}` from toolset.yaml."""
        states: list[Any] = []
        if isinstance(entry, dict):
            states = list(entry.get("states") or [])
            entry = entry.get("target")
        if not isinstance(entry, str) or not entry.strip():
            raise ToolSetError(f"{source}: python target {entry!r} must be 'module[:Class]' or 'file.py[:Class]'")
        if not all(isinstance(s, dict) for s in states):
            raise ToolSetError(f"{source}: python target {entry!r}: each of `states` must be a mapping")
        where, _, attribute = entry.partition(":")
        if where.endswith(".py"):
            path = (base / where).resolve()
            if not path.is_file():
                raise ToolSetError(f"{source}: python file {where!r} not found beside it")
            return cls(module=path.stem, attribute=attribute or None, file=str(path), states=tuple(states))
        if not all(part.isidentifier() for part in where.split(".")):
            raise ToolSetError(f"{source}: {where!r} is neither a module path nor a .py file")
        return cls(module=where, attribute=attribute or None, states=tuple(states))

    def as_dict(self) -> dict[str, Any]:
        return {"module": self.module, "attribute": self.attribute, "file": self.file, "states": list(self.states)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PythonTarget:
        return cls(data["module"], data.get("attribute"), data.get("file"), tuple(data.get("states") or ()))

    @property
    def label(self) -> str:
        return f"{self.file or self.module}{':' + self.attribute if self.attribute else ''}"

    def load_module(self) -> types.ModuleType:
        """A fresh copy of the module: its own globals, not the one in `sys.modules`."""
        if self.file:
            name = _private_name(self.file)
            spec = importlib.util.spec_from_file_location(name, self.file, loader=_NoBytecodeLoader(name, self.file))
        else:
            try:
                spec = importlib.util.find_spec(self.module)
            except (ImportError, ValueError) as exc:
                raise ToolSetError(f"python target {self.label}: {exc}") from exc
        if spec is None or spec.loader is None:
            raise ToolSetError(f"python target {self.label}: module not found")
        module = importlib.util.module_from_spec(spec)
        # dataclasses and typing look the module up by name while it executes.
        sys.modules[module.__name__] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ToolSetError(f"python target {self.label}: importing it failed: {type(exc).__name__}: {exc}") from exc
        return module

    def owner(self, module: types.ModuleType) -> type | types.ModuleType:
        if self.attribute is None:
            return module
        owner = getattr(module, self.attribute, None)
        if not inspect.isclass(owner):
            raise ToolSetError(f"python target {self.label}: {self.attribute!r} is not a class of the module")
        return owner

    def new_instance(self, seed: int) -> object:
        """The object whose methods serve one conversation, with its starting state."""
        owner = self.owner(self.load_module())
        if isinstance(owner, types.ModuleType):
            return owner
        obj = owner()
        if self.states:
            state = self.states[seed % len(self.states)]
            if callable(getattr(obj, "_load_scenario", None)):
                obj._load_scenario(dict(state))
            else:
                for key, value in state.items():
                    setattr(obj, key, value)
        return obj


class _NoBytecodeLoader(importlib.machinery.SourceFileLoader):
    """Writes no `__pycache__` into the tool set (its content hash would change)."""

    def set_data(self, path: str, data: Any, *, _mode: int = 0o666) -> None:
        return None


def _private_name(path: str) -> str:
    return f"magnet_tools_{Path(path).stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def public_callables(owner: type | types.ModuleType) -> list[tuple[str, Callable[..., Any]]]:
    """Public functions defined in a module, or public methods a class defines."""
    if isinstance(owner, types.ModuleType):
        return [
            (name, fn)
            for name, fn in vars(owner).items()
            if not name.startswith("_") and inspect.isfunction(fn) and fn.__module__ == owner.__name__
        ]
    found: dict[str, Callable[..., Any]] = {}
    for klass in owner.__mro__[:-1]:  # not object's; a subclass's method hides its base's
        for name, fn in vars(klass).items():
            if not name.startswith("_") and inspect.isfunction(fn):
                found.setdefault(name, fn)
    return sorted(found.items())


def hint_schema(hint: Any) -> dict[str, Any]:
    """JSON Schema for a type hint; UnsupportedHint for what has none."""
    if hint in PRIMITIVES:
        return dict(PRIMITIVES[hint])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        values = list(args)
        kinds = {type(v) for v in values}
        return {**(hint_schema(kinds.pop()) if len(kinds) == 1 else {}), "enum": values}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return hint_schema(members[0])
        return {"anyOf": [hint_schema(a) for a in members]}
    if origin in (list, set, frozenset, tuple) or (origin is not None and _is_sequence(origin)):
        items = [a for a in args if a is not Ellipsis]
        return {"type": "array", **({"items": hint_schema(items[0])} if len(set(items)) == 1 else {})}
    if origin is dict or (origin is not None and _is_mapping(origin)):
        return {"type": "object", **({"additionalProperties": hint_schema(args[1])} if len(args) == 2 else {})}
    if inspect.isclass(hint) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    if typing.is_typeddict(hint):
        hints = typing.get_type_hints(hint)
        return {
            "type": "object",
            "properties": {k: hint_schema(v) for k, v in hints.items()},
            "required": sorted(hint.__required_keys__),
        }
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return {"type": "object", "properties": {f.name: hint_schema(hints[f.name]) for f in dataclasses.fields(hint)}}
    raise UnsupportedHint(f"type hint {hint!r} has no JSON Schema form here")


def _is_sequence(origin: Any) -> bool:
    return inspect.isclass(origin) and issubclass(origin, abc.Sequence) and not issubclass(origin, str)


def _is_mapping(origin: Any) -> bool:
    return inspect.isclass(origin) and issubclass(origin, abc.Mapping)


def parse_docstring(doc: str) -> tuple[str, dict[str, str], str]:
    """(summary, {parameter: description}, returns description) from a Google or Sphinx docstring."""
    summary: list[str] = []
    params: dict[str, str] = {}
    returns: list[str] = []
    section = None
    current = None
    arg_indent = _arg_indent(doc)
    for line in doc.splitlines():
        stripped = line.strip()
        heading = SECTION.match(stripped)
        if heading:
            section, current = heading.group(1).lower(), None
            continue
        sphinx = SPHINX_ARG.match(line)
        if sphinx:
            current = sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            section = "sphinx"
            continue
        if stripped.startswith(":return"):
            returns.append(stripped.split(":", 2)[-1].strip())
            section = "returns"
            continue
        if section is None:
            summary.append(stripped)
        elif section in ("args", "arguments", "parameters", "params"):
            match = GOOGLE_ARG.match(line)
            if match and (len(line) - len(line.lstrip())) <= arg_indent:
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current and stripped:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section in ("returns", "return") and stripped:
            returns.append(stripped)
        elif section == "sphinx" and current and stripped:
            params[current] = f"{params[current]} {stripped}".strip()
    return " ".join(" ".join(summary).split()), params, " ".join(returns)


def _arg_indent(doc: str) -> int:
    """Indent of the first entry under an Args-like header (continuation lines are deeper)."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if SECTION.match(line.strip()) and line.strip().lower().startswith(("arg", "param")):
            for follow in lines[i + 1 :]:
                if follow.strip():
                    return len(follow) - len(follow.lstrip())
    return 0


def function_spec(name: str, fn: Callable[..., Any], owner_name: str, source: str) -> FunctionSpec:
    """The FunctionSpec of one callable; what keeps it from being a tool goes into `extra['problems']`."""
    problems: list[tuple[str, str]] = []
    doc = inspect.getdoc(fn) or ""
    if not doc.strip():
        problems.append(("python_docstring", "has no docstring to describe it"))
    summary, param_docs, returns_doc = parse_docstring(doc)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        hints = {}
        problems.append(("python_type_hint", f"its type hints cannot be resolved: {exc}"))
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in list(inspect.signature(fn).parameters.values()):
        if param.name in ("self", "cls") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name not in hints:
            problems.append(("python_type_hint", f"parameter {param.name!r} has no type hint"))
            continue
        try:
            schema = hint_schema(hints[param.name])
        except UnsupportedHint as exc:
            problems.append(("python_type_hint", f"parameter {param.name!r}: {exc}"))
            continue
        if param_docs.get(param.name):
            schema["description"] = param_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        elif param.default is not None and not isinstance(param.default, enum.Enum):
            schema["default"] = param.default
        properties[param.name] = schema
    returns = None
    if "return" in hints and hints["return"] is not type(None):
        try:
            returns = hint_schema(hints["return"])
            if returns_doc:
                returns["description"] = returns_doc
        except UnsupportedHint as exc:
            problems.append(("python_type_hint", f"return: {exc}"))
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return FunctionSpec(
        name=name,
        description=summary,
        parameters=parameters,
        returns=returns,
        category=owner_name,
        tool=owner_name,
        source_file=source,
        executable=True,
        extra={"problems": problems} if problems else {},
    )


def python_functions(target: PythonTarget) -> list[FunctionSpec]:
    """Every public callable of the target, as FunctionSpecs (problems noted, not dropped)."""
    owner = target.owner(target.load_module())
    owner_name = target.attribute or target.module
    source = Path(target.file).name if target.file else target.module
    specs = []
    for name, fn in public_callables(owner):
        try:
            line = inspect.getsourcelines(fn)[1]
        except (OSError, TypeError):
            line = 0
        specs.append(function_spec(name, fn, owner_name, f"{source}:{line}" if line else source))
    if not specs:
        raise ToolSetError(f"python target {target.label}: no public functions")
    return specs


def new_instances(targets: list[dict[str, Any]], seed: int) -> dict[str, object]:
    """Fresh objects (modules or class instances) for one conversation, keyed by target label."""
    out: dict[str, object] = {}
    for data in targets:
        target = PythonTarget.from_dict(data)
        out[target.label] = target.new_instance(seed)
    return out
