"""Reading a tool set (a file or a folder of files) into FunctionSpecs.

The format is detected from the content: OpenAI `tools` lists and bare function objects,
BFCL/Gorilla function docs (JSON or JSONL, Gorilla types), ToolBench / StableToolBench
`api_list`s, MCP `tools/list` results, Python files, and a `toolset.yaml` that names BFCL's
executable classes or Python modules/classes and sets options. A file that cannot be read
raises `ToolSetError` naming the file and position; single bad functions are left to
validation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from magnet_dagster.tools import bfcl, toolbench
from magnet_dagster.tools.python_tools import PythonTarget, python_functions
from magnet_dagster.tools.spec import PYTHON_TYPE_NAMES, FunctionSpec, ToolSetError, check_tool_set_name

MANIFEST = "toolset.yaml"
DATA_FILE_SUFFIXES = {".json", ".jsonl"}



@dataclass
class ToolSetSource:
    """What one tool set holds before validation."""

    name: str
    path: Path
    functions: list[FunctionSpec]
    executor: dict[str, Any] = field(default_factory=lambda: {"kind": "simulated"})
    options: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""


def content_hash(path: Path) -> str:
    """Hash of a tool set's bytes (every file of a folder, with relative names)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and not _ignored(p.relative_to(path))) \
        if path.is_dir() else [path]
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _ignored(relative: Path) -> bool:
    """Caches and hidden files are not part of a tool set."""
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def tool_set_name(path: Path) -> str:
    """The partition key for a file or folder in the watched directory."""
    name = path.name if path.is_dir() else path.name.split(".")[0]
    return check_tool_set_name(name)


def gorilla_schema(schema: Any) -> Any:
    """Map Gorilla/BFCL types (`dict`, `float`, `tuple`, `any`) to JSON Schema."""
    if isinstance(schema, list):
        return [gorilla_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            if value == "any":
                continue
            out[key] = PYTHON_TYPE_NAMES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: gorilla_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            out[key] = gorilla_schema(value)
        else:
            out[key] = value
    return out


def function_from_object(obj: dict[str, Any], source: str, tool: str | None = None,
                         category: str | None = None, executable: bool = False) -> FunctionSpec:
    """A bare function object (OpenAI `function`, BFCL doc or MCP tool) -> FunctionSpec."""
    params = obj.get("parameters", obj.get("inputSchema", {"type": "object", "properties": {}}))
    returns = obj.get("response", obj.get("outputSchema", obj.get("returns")))
    return FunctionSpec(
        name=obj.get("name", ""),
        description=obj.get("description", "") or "",
        parameters=gorilla_schema(params),
        returns=gorilla_schema(returns) if returns is not None else None,
        category=category or obj.get("category"),
        tool=tool,
        source_file=source,
        executable=executable,
    )


def _functions_from_value(value: Any, source: str) -> list[FunctionSpec]:
    if toolbench.is_toolbench(value):
        return toolbench.toolbench_functions(value, source, category=Path(source.split(":")[0]).stem)
    if isinstance(value, dict) and isinstance(value.get("tools"), list):  # MCP tools/list result
        return [function_from_object(t, f"{source}#tools[{i}]", category=Path(source).stem)
                for i, t in enumerate(value["tools"])]
    if isinstance(value, dict) and isinstance(value.get("result"), dict):  # MCP JSON-RPC reply
        return _functions_from_value(value["result"], source)
    items = value if isinstance(value, list) else [value]
    specs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ToolSetError(f"{source}: item {i} is not an object")
        if item.get("type") == "function" and isinstance(item.get("function"), dict):
            item = item["function"]
        elif "name" not in item or not ({"parameters", "inputSchema", "description"} & item.keys()):
            raise ToolSetError(f"{source}: item {i} is not a recognised function object")
        specs.append(function_from_object(item, f"{source}#{i}", category=Path(source).stem))
    return specs


def read_tool_file(path: Path) -> list[FunctionSpec]:
    """Functions of one JSON / JSONL file, whichever format it holds."""
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ToolSetError(f"{path}: file is empty")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as whole_error:
        specs = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                where = (f"line {whole_error.lineno} column {whole_error.colno}"
                         if lineno == 1 else f"line {lineno} column {exc.colno}")
                raise ToolSetError(f"{path}: invalid JSON at {where}: {exc.msg}") from exc
            specs.extend(_functions_from_value(obj, f"{path.name}:{lineno}"))
        return specs
    return _functions_from_value(value, path.name)


def read_tool_set(path: Path) -> ToolSetSource:
    """Read a tool set (file or folder); raises ToolSetError for an unreadable file.

    `.py` files beside the others are read as modules of tools unless `toolset.yaml` lists
    `python:` targets, which then say exactly which modules and classes hold the tools.
    """
    name = tool_set_name(path)
    if not path.exists():
        raise ToolSetError(f"{path}: no such tool set")
    source = ToolSetSource(name=name, path=path, functions=[], content_hash=content_hash(path))
    files = sorted(p for p in path.iterdir() if p.is_file() and not _ignored(Path(p.name))) \
        if path.is_dir() else [path]
    manifest = next((f for f in files if f.name == MANIFEST), None)
    config = _read_manifest(manifest) if manifest is not None else {}
    source.options = dict(config.get("options") or {})
    classes = list(config.get("bfcl_classes") or [])
    if classes:
        functions = bfcl.bfcl_functions(classes, function_from_object)
        only = config.get("bfcl_functions")
        if only:
            unknown = sorted(set(only) - {f.name for f in functions})
            if unknown:
                raise ToolSetError(f"{manifest}: bfcl_functions names unknown functions {unknown}")
            functions = [f for f in functions if f.name in set(only)]
        source.functions.extend(functions)
    targets = [PythonTarget.parse(entry, path if path.is_dir() else path.parent, str(manifest))
               for entry in _as_list(config.get("python"), manifest)]
    if not targets:
        targets = [PythonTarget(module=f.stem, file=str(f.resolve())) for f in files if f.suffix == ".py"]
    for target in targets:
        source.functions.extend(python_functions(target))
    data_files = [f for f in files if f.suffix in DATA_FILE_SUFFIXES]
    if not data_files and not source.functions:
        raise ToolSetError(f"{path}: no tool files ({', '.join(sorted(DATA_FILE_SUFFIXES | {'.py'}))}) or {MANIFEST}")
    for f in data_files:
        source.functions.extend(read_tool_file(f))
    source.executor = executor_description(classes, targets, simulated=any(not f.executable for f in source.functions))
    return source


def _read_manifest(manifest: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(manifest.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ToolSetError(f"{manifest}: invalid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise ToolSetError(f"{manifest}: expected a mapping at the top level")
    known = {"bfcl_classes", "bfcl_functions", "python", "options"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ToolSetError(f"{manifest}: unknown key(s) {unknown}; known: {sorted(known)}")
    return config


def _as_list(value: Any, manifest: Path | None) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        return [value]
    if isinstance(value, list):
        return value
    raise ToolSetError(f"{manifest}: `python` must be a target or a list of targets")


def executor_description(classes: list[str], targets: list[PythonTarget], simulated: bool) -> dict[str, Any]:
    """How a tool set's functions run: `bfcl` / `python` (or `bfcl+python`) in-process,
    `simulated` by the teacher, or `mixed` (some of each)."""
    real = [k for k, present in (("bfcl", classes), ("python", targets)) if present]
    kind = ("mixed" if simulated else "+".join(real)) if real else "simulated"
    executor: dict[str, Any] = {"kind": kind}
    if classes:
        executor["classes"] = classes
    if targets:
        executor["python"] = [t.as_dict() for t in targets]
    return executor


def scan_tool_sets(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({tool set name: content hash}, {entry: why it was skipped}) for a watched folder."""
    found: dict[str, str] = {}
    skipped: dict[str, str] = {}
    if not directory.is_dir():
        return found, skipped
    for entry in sorted(directory.iterdir()):
        if _ignored(Path(entry.name)):
            continue
        try:
            name = tool_set_name(entry)
        except ToolSetError as exc:
            skipped[entry.name] = str(exc)
            continue
        if name in found:
            skipped[entry.name] = f"another entry already uses the tool set name {name!r}"
            continue
        found[name] = content_hash(entry)
    return found, skipped
