"""Reading a tool set (a file or a folder of files) into FunctionSpecs.

The format is detected from the content: OpenAI `tools` lists and bare function objects,
BFCL/Gorilla function docs (JSON or JSONL, Gorilla types), MCP `tools/list` results, and a
`toolset.yaml` that bundles BFCL's executable classes. A file that cannot be read raises
`ToolSetError` naming the file and position; single bad functions are left to validation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from magnet_dagster.tools import bfcl
from magnet_dagster.tools.spec import FunctionSpec, ToolSetError, check_tool_set_name

MANIFEST = "toolset.yaml"
TOOL_FILE_SUFFIXES = {".json", ".jsonl"}

GORILLA_TYPES = {"dict": "object", "float": "number", "tuple": "array", "list": "array",
                 "int": "integer", "str": "string", "bool": "boolean"}


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
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


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
            out[key] = GORILLA_TYPES.get(value, value)
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
    """Read a tool set (file or folder); raises ToolSetError for an unreadable file."""
    name = tool_set_name(path)
    if not path.exists():
        raise ToolSetError(f"{path}: no such tool set")
    source = ToolSetSource(name=name, path=path, functions=[], content_hash=content_hash(path))
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    manifest = next((f for f in files if f.name == MANIFEST), None)
    if manifest is not None:
        try:
            config = yaml.safe_load(manifest.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ToolSetError(f"{manifest}: invalid YAML: {exc}") from exc
        if not isinstance(config, dict):
            raise ToolSetError(f"{manifest}: expected a mapping at the top level")
        source.options = dict(config.get("options") or {})
        classes = config.get("bfcl_classes") or []
        if classes:
            functions = bfcl.bfcl_functions(list(classes), function_from_object)
            only = config.get("bfcl_functions")
            if only:
                unknown = sorted(set(only) - {f.name for f in functions})
                if unknown:
                    raise ToolSetError(f"{manifest}: bfcl_functions names unknown functions {unknown}")
                functions = [f for f in functions if f.name in set(only)]
            source.functions.extend(functions)
            source.executor = {"kind": "bfcl", "classes": list(classes)}
    tool_files = [f for f in files if f.suffix in TOOL_FILE_SUFFIXES]
    if not tool_files and not source.functions:
        raise ToolSetError(f"{path}: no tool files ({', '.join(sorted(TOOL_FILE_SUFFIXES))}) or {MANIFEST}")
    for f in tool_files:
        source.functions.extend(read_tool_file(f))
    return source


def scan_tool_sets(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({tool set name: content hash}, {entry: why it was skipped}) for a watched folder."""
    found: dict[str, str] = {}
    skipped: dict[str, str] = {}
    if not directory.is_dir():
        return found, skipped
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
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
