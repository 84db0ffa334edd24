"""ToolBench / StableToolBench APIs as FunctionSpecs.

Three shapes carry them: a tool file (`tool_name`, `api_list` of `name`/`description`), a
bare `api_list`, and a StableToolBench query file (a list of queries, each with its own
`api_list` of `category_name`/`tool_name`/`api_name`/`api_description`), where the same API
recurs across queries and is kept once. ToolBench has no implementations: these functions
are simulated.

API names are URL paths or phrases ("/v1/quotes", "Get Quote"), so the function name is
derived as ToolBench itself does (`<api>_for_<tool>`, snake case), made unique and at most
64 characters with a hash of the original names; the originals stay in `extra['origin']`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from typing import Any

from magnet_dagster import config
from magnet_dagster.tools.spec import PYTHON_TYPE_NAMES, FunctionSpec, nesting_depth

MAX_NAME = 64
#: string defaults that mean a BOOLEAN parameter's value (ToolBench writes '1'/'0' as often as 'true')
BOOLEAN_WORDS = {"true": True, "false": False, "1": True, "0": False}
#: the first word of a ToolBench type, lower-cased -> JSON Schema type; the rest (e.g.
#: "DATE (YYYY-MM-DD)") is kept as a format hint in the description
TYPES = {
    "string": "string",
    "str": "string",
    "enum": "string",
    "date": "string",
    "time": "string",
    "datetime": "string",
    "geopoint": "string",
    "credentials": "string",
    "file": "string",
    "number": "number",
    "float": "number",
    "double": "number",
    "integer": "integer",
    "int": "integer",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "object": "object",
    "dict": "object",
    "json": "object",
}


def is_api_entry(item: Any) -> bool:
    return isinstance(item, dict) and ("api_name" in item or ("name" in item and "url" in item))


def is_toolbench(value: Any) -> bool:
    """A tool file / bare `api_list` object, a query file, or a list of api entries."""
    if isinstance(value, dict):
        return isinstance(value.get("api_list"), list)
    if isinstance(value, list) and value:
        return all(isinstance(v, dict) and isinstance(v.get("api_list"), list) for v in value) or all(
            is_api_entry(v) for v in value
        )
    return False


def snake(text: str) -> str:
    words = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    return re.sub(r"_+", "_", words) or "api"


def _hash(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:8]


def _with_hash(name: str, *parts: str) -> str:
    """`name` cut to leave room for a hash of `parts`, which keeps it unique and stable."""
    return f"{name[: MAX_NAME - 9].rstrip('_')}_{_hash(*parts)}"


def derived_name(tool: str, api: str) -> str:
    name = f"{snake(api)}_for_{snake(tool)}" if tool else snake(api)
    if name[0].isdigit():
        name = f"api_{name}"
    return _with_hash(name, tool, api) if len(name) > MAX_NAME else name


def _type_and_hint(raw: Any) -> tuple[str, str]:
    text = (_text(raw) or "string").strip()
    first = re.split(r"[\s(]", text, maxsplit=1)[0].lower()
    if first not in TYPES:
        return text.lower(), ""  # left as is: validation refuses it by name and rule
    rest = text[len(first) :].strip().removeprefix("(").removesuffix(")").strip()
    return TYPES[first], rest


def _coerce_default(value: Any, json_type: str) -> Any:
    """ToolBench writes defaults as strings ('10', 'true', '1'); turn clean ones into the type."""
    if json_type == "boolean" and type(value) is int and value in (0, 1):
        return bool(value)
    if not isinstance(value, str):
        return value
    if json_type == "integer" and re.fullmatch(r"[-+]?\d{1,4000}", value.strip()):
        return int(value)
    if json_type == "number" and re.fullmatch(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", value.strip()):
        return float(value)
    if json_type == "boolean" and value.strip().lower() in BOOLEAN_WORDS:
        return BOOLEAN_WORDS[value.strip().lower()]
    return value


def _text(value: Any) -> str:
    """A field ToolBench means as text (name, type, description), whatever the file holds there.

    Containers are written as JSON when shallow; a deep one is not rendered at all, since
    `str()` of it recurses (the function is then rejected for its name or description).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value) if nesting_depth(value, 8) <= 8 else f"(a {type(value).__name__} nested too deeply)"
    return str(value)


def _scalar(value: Any) -> Any:
    """A value kept as it is in `origin` when it is a JSON scalar, else as text."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else _text(value)


def parameter_schema(param: dict[str, Any]) -> dict[str, Any]:
    json_type, hint = _type_and_hint(param.get("type"))
    description = _text(param.get("description")).strip()
    if hint:
        description = f"{description} ({hint})".strip()
    schema: dict[str, Any] = {"type": json_type}
    if description:
        schema["description"] = description
    default = param.get("default")
    if default not in (None, ""):
        schema["default"] = _coerce_default(default, json_type)
    return schema


def template_schema(template: Any) -> dict[str, Any]:
    """A permissive schema from a `template_response` example (type names or sample values).

    Recursive: callers check the template's depth first (see `_returns`).
    """
    if isinstance(template, dict):
        return {"type": "object", "properties": {str(k): template_schema(v) for k, v in template.items()}}
    if isinstance(template, list):
        return {"type": "array", **({"items": template_schema(template[0])} if template else {})}
    if isinstance(template, bool):
        return {"type": "boolean"}
    if isinstance(template, (int, float)):
        return {"type": "number"}
    if isinstance(template, str):
        return {"type": PYTHON_TYPE_NAMES[template]} if template in PYTHON_TYPE_NAMES else {}
    return {}


def _entries(value: Any, source: str) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """(api entry, defaults from its tool file, where it came from) in reading order."""
    if isinstance(value, dict):
        tool = {
            "tool_name": _text(value.get("tool_name") or value.get("name")),
            "category_name": _text(value.get("category_name") or value.get("category")),
            "tool_description": _text(value.get("tool_description")),
        }
        return [(api, tool, f"{source}#api_list[{i}]") for i, api in enumerate(value["api_list"])]
    if all(is_api_entry(v) for v in value):
        return [(api, {}, f"{source}#{i}") for i, api in enumerate(value)]
    return [
        (api, {}, f"{source}#{q}.api_list[{i}]")
        for q, query in enumerate(value)
        for i, api in enumerate(query["api_list"])
    ]


def toolbench_functions(value: Any, source: str, category: str | None = None) -> list[FunctionSpec]:
    """FunctionSpecs for every distinct API in a ToolBench value; names unique and stable."""
    seen: dict[tuple[str, str, str], tuple[dict[str, Any], str]] = {}
    for api, tool, where in _entries(value, source):
        if not isinstance(api, dict):
            seen[("", "", where)] = ({}, where)  # kept so validation names it
            continue
        origin = (
            _text(api.get("category_name") or tool.get("category_name") or category),
            _text(api.get("tool_name") or tool.get("tool_name")),
            _text(api.get("api_name") or api.get("name")),
        )
        seen.setdefault(origin, ({**api, **{k: v for k, v in tool.items() if v and k not in api}}, where))
    by_name: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for origin in seen:
        by_name[derived_name(origin[1], origin[2])].append(origin)
    specs = []
    for name, origins in sorted(by_name.items()):
        for origin in origins:
            api, where = seen[origin]
            unique = name if len(origins) == 1 else _with_hash(name, *origin)
            specs.append(_spec(unique, origin, api, where))
    return specs


def _spec(name: str, origin: tuple[str, str, str], api: dict[str, Any], where: str) -> FunctionSpec:
    category, tool, api_name = origin
    problems: list[tuple[str, str]] = []
    required_params = _parameter_list(api, "required_parameters", problems)
    optional_params = _parameter_list(api, "optional_parameters", problems)
    properties = {_text(p.get("name")): parameter_schema(p) for p in optional_params + required_params}
    required = list(dict.fromkeys(_text(p.get("name")) for p in required_params))
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    description = _text(api.get("api_description") or api.get("description")).strip()
    tool_description = _text(api.get("tool_description")).strip()
    extra: dict[str, Any] = {
        "origin": {
            "format": "toolbench",
            "category_name": category,
            "tool_name": tool,
            "api_name": api_name,
            "method": _scalar(api.get("method")),
            "url": _scalar(api.get("url")),
        }
    }
    returns = _returns(api.get("template_response"), problems)
    if problems:
        extra["problems"] = problems
    return FunctionSpec(
        name=name if api_name else "",
        description=description or f"{api_name} ({tool})" + (f": {tool_description}" if tool_description else ""),
        parameters=parameters,
        returns=returns,
        category=category or tool or None,
        tool=tool or None,
        source_file=where,
        extra=extra,
    )


def _parameter_list(api: dict[str, Any], key: str, problems: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The parameter entries under `key`; anything but a list is noted as a problem, not guessed at."""
    value = api.get(key)
    if value in (None, "", []):
        return []
    if not isinstance(value, list):
        problems.append(("toolbench_parameters", f"{key} must be a list, not a {type(value).__name__}"))
        return []
    return [p for p in value if isinstance(p, dict)]


def _returns(template: Any, problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    """The returns schema from `template_response`, unless it nests past the schema depth limit."""
    if not isinstance(template, (dict, list)) or not template:
        return None
    limit = config.limits().max_schema_depth
    if nesting_depth(template, limit) > limit:
        problems.append(
            (
                "schema_depth",
                f"template_response nests more than {limit} levels deep; "
                f"the limit is {limit} (MAGNET_MAX_SCHEMA_DEPTH)",
            )
        )
        return None
    return template_schema(template)
