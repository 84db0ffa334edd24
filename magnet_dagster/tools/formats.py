"""Reading a tool set (a file or a folder of files) into FunctionSpecs.

The format is detected from the content: OpenAI `tools` lists and bare function objects,
BFCL/Gorilla function docs (JSON or JSONL, Gorilla types), ToolBench / StableToolBench
`api_list`s, MCP `tools/list` results, Python files, and a `toolset.yaml` that names BFCL's
executable classes or Python modules/classes and sets options.

Tool files are untrusted input. A file that cannot be read at all raises `ToolSetError`
(one line naming the file and the reason, e.g. the JSON position) and fails only its
partition; a bad line of a JSONL file, or a file with no functions in it, becomes a
`Rejection` and the rest is read; single bad functions are left to validation. JSON nested
deeper than Python's `json` reader allows (about 1,000 levels) is refused as a whole file or
line; a schema deep but readable is left to validation's `schema_depth` rule.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from magnet_dagster import config
from magnet_dagster.tools import bfcl, toolbench
from magnet_dagster.tools.python_tools import PythonTarget, python_functions
from magnet_dagster.tools.spec import (
    PYTHON_TYPE_NAMES,
    FunctionSpec,
    Rejection,
    ToolSetError,
    check_tool_set_name,
    nesting_depth,
)

MANIFEST = "toolset.yaml"
DATA_FILE_SUFFIXES = {".json", ".jsonl"}


@dataclass
class ToolSetSource:
    """What one tool set holds before validation.

    `rejections`: what was refused while reading (a JSONL line that is not JSON or not a
    function, a file with no functions), to be stored beside validation's rejections.
    `ignored`: one-line notes on files of a folder that were deliberately not read (e.g. a
    `.py` file that `toolset.yaml` does not list as a `python:` target).
    """

    name: str
    path: Path
    functions: list[FunctionSpec]
    executor: dict[str, Any] = field(default_factory=lambda: {"kind": "simulated"})
    options: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    rejections: list[Rejection] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def content_hash(path: Path) -> str:
    """Hash of a tool set's bytes (every file of a folder, with relative names)."""
    digest = hashlib.sha256()
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and not _ignored(p.relative_to(path)))
        if path.is_dir()
        else [path]
    )
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


# ------------------------------------------------------------------ JSON, safely


class JSONTooDeep(ValueError):
    """JSON nested deeper than Python's `json` reader can follow."""


def parse_json(text: str) -> Any:
    """`json.loads`, with nesting too deep to read as a `JSONTooDeep` (a ValueError), not a crash.

    Raises ValueError only: `json.JSONDecodeError` (with its position), `JSONTooDeep`, or
    ValueError for a value Python refuses (an integer of more than 4,300 digits).
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise JSONTooDeep("JSON nests too deep to read (Python's reader stops near 1,000 levels)") from None


def _why(exc: ValueError, in_line: bool = False) -> str:
    """One line on why a text is not readable JSON (the line number is the caller's, in a line)."""
    if isinstance(exc, json.JSONDecodeError):
        where = f"column {exc.colno}" if in_line else f"line {exc.lineno} column {exc.colno}"
        return f"invalid JSON at {where}: {exc.msg}"
    if isinstance(exc, JSONTooDeep):
        return str(exc)
    return f"unreadable JSON: {exc}"


# ------------------------------------------------------------------ formats


def gorilla_schema(schema: Any) -> Any:
    """Map Gorilla/BFCL types (`dict`, `float`, `tuple`, `any`) to JSON Schema.

    Recursive: callers check the depth first (`_gorilla_within_limit`).
    """
    if isinstance(schema, list):
        return [gorilla_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
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


def _gorilla_within_limit(schema: Any) -> Any:
    """`gorilla_schema`, unless the schema nests past the limit: then it is left as it is, for
    validation to reject with rule `schema_depth` before anything recursive reads it."""
    limit = config.limits().max_schema_depth
    return schema if nesting_depth(schema, limit) > limit else gorilla_schema(schema)


def function_from_object(
    obj: dict[str, Any], source: str, tool: str | None = None, category: str | None = None, executable: bool = False
) -> FunctionSpec:
    """A bare function object (OpenAI `function`, BFCL doc or MCP tool) -> FunctionSpec."""
    params = obj.get("parameters", obj.get("inputSchema", {"type": "object", "properties": {}}))
    returns = obj.get("response", obj.get("outputSchema", obj.get("returns")))
    category = category or obj.get("category")
    return FunctionSpec(
        name=obj.get("name", ""),
        description=obj.get("description", "") or "",
        parameters=_gorilla_within_limit(params),
        returns=_gorilla_within_limit(returns) if returns is not None else None,
        category=category if isinstance(category, str) else None,
        tool=tool,
        source_file=source,
        executable=executable,
    )


def _functions_from_value(value: Any, source: str, unwrapped: bool = False) -> list[FunctionSpec]:
    """The functions of one parsed JSON value; ToolSetError when it holds no recognisable shape."""
    if toolbench.is_toolbench(value):
        return toolbench.toolbench_functions(value, source, category=Path(source.split(":")[0]).stem)
    if isinstance(value, dict) and isinstance(value.get("tools"), list):  # MCP tools/list result
        return [
            function_from_object(t, f"{source}#tools[{i}]", category=Path(source).stem)
            for i, t in enumerate(_objects(value["tools"], source, "tools"))
        ]
    if isinstance(value, dict) and isinstance(value.get("result"), dict) and "name" not in value and not unwrapped:
        return _functions_from_value(value["result"], source, unwrapped=True)  # MCP JSON-RPC reply
    specs = []
    for i, item in enumerate(_objects(value if isinstance(value, list) else [value], source, "item")):
        if item.get("type") == "function" and isinstance(item.get("function"), dict):
            item = item["function"]
        elif "name" not in item or not ({"parameters", "inputSchema", "description"} & item.keys()):
            raise ToolSetError(f"{source}: item {i} is not a recognised function object")
        specs.append(function_from_object(item, f"{source}#{i}", category=Path(source).stem))
    return specs


def _objects(items: list[Any], source: str, what: str) -> list[dict[str, Any]]:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            where = f"item {i}" if what == "item" else f"{what}[{i}]"
            raise ToolSetError(f"{source}: {where} is not an object")
    return items


def _read_text(path: Path) -> str:
    """A file's text (UTF-8, a leading BOM allowed); ToolSetError when it is not readable text."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise ToolSetError(f"{path}: not UTF-8 text (byte {byte:#04x} at offset {exc.start})") from None
    except OSError as exc:
        raise ToolSetError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def read_tool_file(path: Path) -> tuple[list[FunctionSpec], list[Rejection]]:
    """Functions of one JSON / JSONL file, whichever format it holds, and what was refused in it.

    A `.jsonl` file, or a `.json` file whose first line is a whole JSON value followed by more
    (BFCL's data files are), is read line by line: a bad line is one rejection and the others
    are read. Any other file that is not valid JSON fails as a whole, with its position.
    """
    text = _read_text(path)
    if not text.strip():
        raise ToolSetError(f"{path}: file is empty")
    try:
        value = parse_json(text)
    except ValueError as exc:
        if not _one_value_per_line(path, text, exc):
            raise ToolSetError(f"{path}: {_why(exc)}") from None
        specs, rejections = _read_lines(path, text)
    else:
        specs, rejections = _functions_from_value(value, path.name), []
    if not specs and not rejections:
        rejections.append(Rejection(None, path.name, "no_functions", f"{path.name}: holds no functions"))
    return specs, rejections


def _one_value_per_line(path: Path, text: str, exc: ValueError) -> bool:
    if path.suffix == ".jsonl":
        return True
    return isinstance(exc, json.JSONDecodeError) and exc.msg == "Extra data" and "\n" not in text[: exc.pos].strip()


def _read_lines(path: Path, text: str) -> tuple[list[FunctionSpec], list[Rejection]]:
    """JSONL: each line on its own; an unreadable line (`json_line`) or one that holds no
    function object (`not_a_function`) is a rejection `file.jsonl:LINE: why`."""
    specs: list[FunctionSpec] = []
    rejections: list[Rejection] = []
    for lineno, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 may sit in a string
        if not line.strip():
            continue
        where = f"{path.name}:{lineno}"
        try:
            value = parse_json(line)
        except ValueError as exc:
            rejections.append(Rejection(None, where, "json_line", f"{where}: {_why(exc, in_line=True)}"))
            continue
        try:
            specs.extend(_functions_from_value(value, where))
        except ToolSetError as exc:
            rejections.append(Rejection(None, where, "not_a_function", str(exc)))
    return specs, rejections


# ------------------------------------------------------------------ tool sets


def read_tool_set(path: Path) -> ToolSetSource:
    """Read a tool set (file or folder); raises ToolSetError for an unreadable file.

    Python code runs only where the user asked for it: a lone `.py` file is its own tool
    set, and inside a folder a `.py` file is imported only when `toolset.yaml` lists it as a
    `python:` target (a stray `setup.py` or helper is noted in `ignored`, never imported).
    """
    name = tool_set_name(path)
    if not path.exists():
        raise ToolSetError(f"{path}: no such tool set")
    source = ToolSetSource(name=name, path=path, functions=[], content_hash=content_hash(path))
    files = sorted(p for p in path.iterdir() if p.is_file() and not _ignored(Path(p.name))) if path.is_dir() else [path]
    manifest = next((f for f in files if f.name == MANIFEST), None)
    settings = _read_manifest(manifest) if manifest is not None else {}
    source.options = _mapping(settings.get("options"), manifest, "options")
    classes = _names(settings.get("bfcl_classes"), manifest, "bfcl_classes")
    if classes:
        source.functions.extend(
            _bfcl_functions(classes, _names(settings.get("bfcl_functions"), manifest, "bfcl_functions"), manifest)
        )
    base = path if path.is_dir() else path.parent
    targets = [PythonTarget.parse(entry, base, str(manifest)) for entry in _as_list(settings.get("python"), manifest)]
    if path.is_file() and path.suffix == ".py":
        targets = [PythonTarget(module=path.stem, file=str(path.resolve()))]
    source.ignored = _not_read(files, targets, manifest) if path.is_dir() else []
    for target in targets:
        source.functions.extend(_python_functions(target, manifest))
    data_files = [f for f in files if f.suffix in DATA_FILE_SUFFIXES]
    if not data_files and not source.functions:
        notes = "".join(f"; {note}" for note in source.ignored)
        raise ToolSetError(
            f"{path}: no tool files ({', '.join(sorted(DATA_FILE_SUFFIXES | {'.py'}))}) or {MANIFEST}{notes}"
        )
    for f in data_files:
        specs, rejections = read_tool_file(f)
        source.functions.extend(specs)
        source.rejections.extend(rejections)
    source.executor = executor_description(classes, targets, simulated=any(not f.executable for f in source.functions))
    return source


def _not_read(files: list[Path], targets: list[PythonTarget], manifest: Path | None) -> list[str]:
    """A note for each file of a folder that is deliberately not read."""
    imported = {t.file for t in targets if t.file}
    notes = []
    for f in files:
        if f.suffix == ".py" and str(f.resolve()) not in imported:
            notes.append(f"{f.name}: not imported (not a `python:` target in {MANIFEST})")
        elif f.suffix not in DATA_FILE_SUFFIXES | {".py"} and f != manifest:
            notes.append(f"{f.name}: not read (tool files are .json, .jsonl, .py or {MANIFEST})")
    return notes


def _bfcl_functions(classes: list[str], only: list[str], manifest: Path | None) -> list[FunctionSpec]:
    """The functions of BFCL's executable classes, optionally only the named ones."""
    try:
        functions = bfcl.bfcl_functions(classes, function_from_object)
    except ToolSetError as exc:
        raise ToolSetError(f"{manifest}: {exc}") from exc
    if not only:
        return functions
    unknown = sorted(set(only) - {f.name for f in functions})
    if unknown:
        raise ToolSetError(f"{manifest}: bfcl_functions names unknown functions {unknown}")
    return [f for f in functions if f.name in set(only)]


def _python_functions(target: PythonTarget, manifest: Path | None) -> list[FunctionSpec]:
    """A target's functions; an error names the manifest that listed the target."""
    try:
        return python_functions(target)
    except ToolSetError as exc:
        if manifest is None:
            raise
        raise ToolSetError(f"{manifest}: {exc}") from exc


def _read_manifest(manifest: Path) -> dict[str, Any]:
    try:
        settings = yaml.safe_load(_read_text(manifest)) or {}
    except yaml.YAMLError as exc:
        raise ToolSetError(f"{manifest}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ToolSetError(f"{manifest}: invalid YAML: nested too deeply to read") from None
    if not isinstance(settings, dict):
        raise ToolSetError(f"{manifest}: expected a mapping at the top level")
    known = {"bfcl_classes", "bfcl_functions", "python", "options"}
    unknown = sorted(set(map(str, settings)) - known)
    if unknown:
        raise ToolSetError(f"{manifest}: unknown key(s) {unknown}; known: {sorted(known)}")
    return settings


def _mapping(value: Any, manifest: Path | None, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ToolSetError(f"{manifest}: `{key}` must be a mapping")
    return dict(value)


def _names(value: Any, manifest: Path | None, key: str) -> list[str]:
    """A name or a list of names (e.g. `bfcl_classes: MathAPI` or `[MathAPI, TicketAPI]`)."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ToolSetError(f"{manifest}: `{key}` must be a name or a list of names")
    return list(names)


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


def find_tool_set(key: str, directory: Path | None = None) -> Path:
    """The file or folder in the watched directory whose name is the partition key."""
    directory = directory or config.tool_sets_dir()
    for entry in sorted(directory.iterdir()) if directory.is_dir() else []:
        try:
            if tool_set_name(entry) == key:
                return entry
        except ToolSetError:
            continue
    raise ToolSetError(f"tool set {key!r} not found in {directory}")


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
