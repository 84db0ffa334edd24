"""Per-function checks: a bad function is rejected with a reason, the rest goes on.

Tool files are untrusted: a function may nest its schema thousands of levels deep or carry a
megabyte of description. Size and depth are measured first, without recursion, against
`config.limits()` (read on every call, so the environment can change them), and only a
function within them reaches the recursive checks (`$ref`, JSON Schema meta-schema, enums).
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from magnet_dagster import config
from magnet_dagster.tools.spec import FunctionSpec, Rejection, nesting_depth

__all__ = ["FUNCTION_NAME", "Rejection", "function_problems", "validate_functions"]

FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_VALIDATOR = jsonschema.Draft202012Validator
#: depth is reported exactly up to here (the JSON reader refuses deeper files anyway)
_MEASURE_CAP = 100_000


def shown(value: Any, width: int = 80) -> str:
    """A short, safe rendering of a value for a reason: never a megabyte, never `repr` of a deep container."""
    if isinstance(value, (dict, list, tuple)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= width else f"{text[:width]}… ({len(text)} characters)"


def _has_ref(schema: Any) -> bool:
    """Whether `$ref` appears anywhere in the schema (iterative: safe at any depth)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "$ref" in node:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _long_description(schema: Any, max_chars: int) -> tuple[str, int] | None:
    """(where, length) of the first `description` string longer than `max_chars` in a schema."""
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            text = node.get("description")
            if isinstance(text, str) and len(text) > max_chars:
                return where or "(root)", len(text)
            stack.extend((v, f"{where}/{k}".lstrip("/")) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}/{i}".lstrip("/")) for i, v in enumerate(node))
    return None


def _size_problems(spec: FunctionSpec, limits: config.Limits) -> list[tuple[str, str]]:
    """Depth and description length: the checks that must come before anything recursive."""
    problems: list[tuple[str, str]] = []
    description = spec.description
    if not isinstance(description, str):
        problems.append(("description_type", f"description must be a string, not {shown(description)}"))
    elif len(description) > limits.max_description_chars:
        problems.append(
            (
                "description_length",
                f"description is {len(description)} characters; the limit is "
                f"{limits.max_description_chars} (MAGNET_MAX_DESCRIPTION_CHARS)",
            )
        )
    for field_name, schema in (("parameters", spec.parameters), ("returns", spec.returns)):
        if nesting_depth(schema, limits.max_schema_depth) > limits.max_schema_depth:
            found = nesting_depth(schema, _MEASURE_CAP)
            levels = found if found <= _MEASURE_CAP else f"more than {_MEASURE_CAP}"
            problems.append(
                (
                    "schema_depth",
                    f"{field_name} nests {levels} levels deep; the limit is "
                    f"{limits.max_schema_depth} (MAGNET_MAX_SCHEMA_DEPTH)",
                )
            )
            continue
        long = _long_description(schema, limits.max_description_chars)
        if long:
            problems.append(
                (
                    "description_length",
                    f"{field_name} description at {long[0]} is {long[1]} characters; "
                    f"the limit is {limits.max_description_chars} (MAGNET_MAX_DESCRIPTION_CHARS)",
                )
            )
    return problems


def function_problems(spec: FunctionSpec, limits: config.Limits | None = None) -> list[tuple[str, str]]:
    """(rule, reason) for every rule the function breaks; empty when it is usable."""
    limits = limits or config.limits()
    problems: list[tuple[str, str]] = list(spec.extra.get("problems", []))
    if not isinstance(spec.name, str) or not FUNCTION_NAME.fullmatch(spec.name):
        problems.append(("name", f"name {shown(spec.name)} must match {FUNCTION_NAME.pattern}"))
    size = _size_problems(spec, limits)
    problems.extend(size)
    params = spec.parameters
    if not isinstance(params, dict) or params.get("type") != "object":
        problems.append(("parameters_object", "parameters must be a JSON Schema with type 'object'"))
        return problems
    if any(rule == "schema_depth" for rule, _ in size):
        return problems  # too deep for the recursive checks below
    schema_problems = [p for p in map(_schema_problem, ("parameters", "returns"), (params, spec.returns)) if p]
    problems.extend(schema_problems)
    props = params.get("properties", {})
    required = params.get("required", [])
    missing = (
        [r for r in required if isinstance(r, str) and r not in props]
        if isinstance(required, list) and isinstance(props, dict)
        else []
    )
    if missing:
        problems.append(("required_subset", f"required names {missing} are not in properties"))
    if any(rule.startswith("parameters_") for rule, _ in schema_problems):
        return problems  # values are checked against a valid schema only
    for pname, pschema in props.items() if isinstance(props, dict) else ():
        if isinstance(pschema, dict):
            problems.extend(_value_problems(pname, pschema))
    return problems


def _schema_problem(field_name: str, schema: Any) -> tuple[str, str] | None:
    """`$ref` (not resolved here) or a schema the JSON Schema meta-schema refuses."""
    if schema is None:
        return None
    if _has_ref(schema):
        return f"{field_name}_ref", f"{field_name} uses $ref, which is not resolved here"
    try:
        _VALIDATOR.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path) or "(root)"
        return f"{field_name}_schema", f"{field_name} is not valid JSON Schema at {path}: {_short(exc.message)}"
    return None


def _value_problems(pname: str, pschema: dict[str, Any]) -> list[tuple[str, str]]:
    """A parameter's enum values and default must fit its type, and the default its enum."""
    problems: list[tuple[str, str]] = []
    validator = _VALIDATOR({k: v for k, v in pschema.items() if k not in ("default", "enum")})
    enum = pschema.get("enum")
    for value in enum if isinstance(enum, list) else []:
        if not validator.is_valid(value):
            problems.append(("enum_type", f"parameter {pname!r}: enum value {shown(value)} does not match its type"))
            break
    default = pschema.get("default")
    if default is None:
        return problems
    if not validator.is_valid(default):
        problems.append(("default_type", f"parameter {pname!r}: default {shown(default)} does not match its type"))
    if isinstance(enum, list) and not _VALIDATOR({"enum": enum}).is_valid(default):
        problems.append(
            ("default_enum", f"parameter {pname!r}: default {shown(default)} is not one of its enum values")
        )
    return problems


def _short(text: str, width: int = 300) -> str:
    return text if len(text) <= width else f"{text[:width]}…"


def validate_functions(specs: list[FunctionSpec]) -> tuple[list[FunctionSpec], list[Rejection]]:
    """Keep the good functions; reject the bad ones one by one, with file, name and rule."""
    limits = config.limits()
    kept: dict[str, FunctionSpec] = {}
    rejected: list[Rejection] = []
    for spec in specs:
        problems = function_problems(spec, limits)
        if problems:
            name = spec.name if isinstance(spec.name, str) else None
            label = name if name is not None and name.isprintable() and len(name) <= 80 else shown(spec.name)
            for rule, reason in problems:
                rejected.append(Rejection(name, spec.source_file, rule, f"{spec.source_file}: {label}: {reason}"))
            continue
        if spec.name in kept:
            if _schema_key(kept[spec.name]) != _schema_key(spec):
                rejected.append(
                    Rejection(
                        spec.name,
                        spec.source_file,
                        "duplicate_name",
                        f"{spec.source_file}: {spec.name}: duplicate name with a different schema "
                        f"(first defined in {kept[spec.name].source_file})",
                    )
                )
            continue
        kept[spec.name] = spec
    return list(kept.values()), rejected


def _schema_key(spec: FunctionSpec) -> str:
    return json.dumps([spec.parameters, spec.returns], sort_keys=True)
