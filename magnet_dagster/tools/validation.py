"""Per-function checks: a bad function is rejected with a reason, the rest goes on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from magnet_dagster.tools.spec import FunctionSpec

FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_VALIDATOR = jsonschema.Draft202012Validator


@dataclass(frozen=True)
class Rejection:
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


def _has_ref(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "$ref" in schema or any(_has_ref(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_ref(v) for v in schema)
    return False


def function_problems(spec: FunctionSpec) -> list[tuple[str, str]]:
    """(rule, reason) for every rule the function breaks; empty when it is usable."""
    problems: list[tuple[str, str]] = list(spec.extra.get("problems", []))
    if not FUNCTION_NAME.match(spec.name or ""):
        problems.append(("name", f"name {spec.name!r} must match {FUNCTION_NAME.pattern}"))
    params = spec.parameters
    if not isinstance(params, dict) or params.get("type") != "object":
        problems.append(("parameters_object", "parameters must be a JSON Schema with type 'object'"))
        return problems
    for field_name, schema in (("parameters", params), ("returns", spec.returns)):
        if schema is None:
            continue
        if _has_ref(schema):
            problems.append((f"{field_name}_ref", f"{field_name} uses $ref, which is not resolved here"))
            continue
        try:
            _VALIDATOR.check_schema(schema)
        except jsonschema.SchemaError as exc:
            path = "/".join(str(p) for p in exc.path) or "(root)"
            problems.append((f"{field_name}_schema", f"{field_name} is not valid JSON Schema at {path}: {exc.message}"))
    props = params.get("properties", {})
    missing = [r for r in params.get("required", []) if r not in props]
    if missing:
        problems.append(("required_subset", f"required names {missing} are not in properties"))
    for pname, pschema in props.items() if isinstance(props, dict) else ():
        if not isinstance(pschema, dict):
            continue
        validator = _VALIDATOR({k: v for k, v in pschema.items() if k not in ("default", "enum")})
        for value in pschema.get("enum", []) or []:
            if not validator.is_valid(value):
                problems.append(("enum_type", f"parameter {pname!r}: enum value {value!r} does not match its type"))
                break
        if "default" in pschema and pschema["default"] is not None and not validator.is_valid(pschema["default"]):
            problems.append(("default_type", f"parameter {pname!r}: default {pschema['default']!r} does not match its type"))
    return problems


def validate_functions(specs: list[FunctionSpec]) -> tuple[list[FunctionSpec], list[Rejection]]:
    """Keep the good functions; reject the bad ones one by one, with file, name and rule."""
    kept: dict[str, FunctionSpec] = {}
    rejected: list[Rejection] = []
    for spec in specs:
        problems = function_problems(spec)
        if problems:
            for rule, reason in problems:
                rejected.append(Rejection(spec.name, spec.source_file, rule, f"{spec.source_file}: {spec.name}: {reason}"))
            continue
        if spec.name in kept:
            if _schema_key(kept[spec.name]) != _schema_key(spec):
                rejected.append(Rejection(
                    spec.name, spec.source_file, "duplicate_name",
                    f"{spec.source_file}: {spec.name}: duplicate name with a different schema "
                    f"(first defined in {kept[spec.name].source_file})",
                ))
            continue
        kept[spec.name] = spec
    return list(kept.values()), rejected


def _schema_key(spec: FunctionSpec) -> str:
    return json.dumps([spec.parameters, spec.returns], sort_keys=True)
