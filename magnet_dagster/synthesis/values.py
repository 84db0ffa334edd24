"""Values a user of a tool would give: the teacher reads each parameter's description, enum,
format and examples and proposes one (cached like every call), instead of a word list.

A proposal is checked against the parameter's own schema; an enum, boolean or number the
teacher gets wrong is taken from the schema itself, while a string it cannot propose fails
the attempt (the turn is regenerated), so no placeholder text ever reaches a query. A number
is kept to four significant digits, as a user would say it (25.79, not 25.7854367229349375):
the query, the reference call and every later prompt carry it, and on the embedded model
every token of it costs time.
"""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema

from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.tools.spec import FunctionSpec

VALUES_PROMPT = """Propose realistic values that a real user of this function would give for the
listed parameters: concrete names, dates, amounts, ids in the format each description asks for.
Answer with JSON: one value per parameter.
Function: {name}: {description}
Parameters:
{parameters}"""

_PARAMETER_KEYS = ("type", "description", "enum", "format", "examples", "minimum", "maximum", "pattern", "items")


def _parameter_line(name: str, schema: dict[str, Any]) -> str:
    shown = {k: schema[k] for k in _PARAMETER_KEYS if k in schema}
    return f"- {name}: {json.dumps(shown)[:400]}"


#: what one proposed value may take in the structured output: a user gives a few items and a short
#: string, and a weak model otherwise lists numbers or writes prose until `max_tokens` cuts the JSON
MAX_ITEMS, MAX_STRING = 6, 80


def bounded(schema: Any) -> Any:
    """`schema` with every array capped at `MAX_ITEMS` items and every free string at `MAX_STRING`
    characters (tighter bounds of its own are kept; enums and patterns are left alone). Only the
    request's structured output is bounded: a proposal is still checked against the real schema."""
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) if isinstance(v, dict | list) else v for k, v in schema.items()}
    declared = out.get("type")
    kinds: list[Any] = declared if isinstance(declared, list) else [declared]
    if "array" in kinds:
        out["maxItems"] = min(out.get("maxItems", MAX_ITEMS), MAX_ITEMS)
        out["minItems"] = min(out.get("minItems", 0), out["maxItems"])
    if "string" in kinds and "enum" not in out and "pattern" not in out and "format" not in out:
        out["maxLength"] = min(out.get("maxLength", MAX_STRING), MAX_STRING)
        out["minLength"] = min(out.get("minLength", 0), out["maxLength"])
    return out


def values_request(spec: FunctionSpec, names: list[str], seed: int, temperature: float) -> LLMRequest:
    props = {n: spec.properties.get(n, {}) for n in names}
    schema = {"type": "object", "properties": {n: bounded(s) for n, s in props.items()}, "required": names}
    return LLMRequest(
        messages=[
            {
                "role": "user",
                "content": VALUES_PROMPT.format(
                    name=spec.name,
                    description=spec.description[:300],
                    parameters="\n".join(_parameter_line(n, s) for n, s in props.items()),
                ),
            }
        ],
        response_schema=schema,
        temperature=temperature,
        max_tokens=48 + 40 * len(names),
        seed=seed,
    )


SIGNIFICANT_DIGITS = 4


def as_a_user_says_it(value: Any) -> Any:
    """Floats (also inside lists and objects) to `SIGNIFICANT_DIGITS` significant digits; a
    whole float stays as it is, and so does everything else."""
    if isinstance(value, float) and not value.is_integer():
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, list):
        return [as_a_user_says_it(v) for v in value]
    if isinstance(value, dict):
        return {k: as_a_user_says_it(v) for k, v in value.items()}
    return value


def from_schema(schema: dict[str, Any], rng: random.Random) -> tuple[bool, Any]:
    """(ok, value) for a parameter whose schema alone says what is valid: enum, boolean, number."""
    if schema.get("enum"):
        return True, rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "boolean":
        return True, rng.choice([True, False])
    if kind in ("integer", "number"):
        low, high = int(schema.get("minimum", 1)), int(schema.get("maximum", 100))
        return True, rng.randint(low, max(low, high)) if kind == "integer" else float(rng.randint(low, max(low, high)))
    return False, None


async def suggest_values(
    client: LLMClient, spec: FunctionSpec, names: list[str], seed: int, temperature: float, call_ids: list[str]
) -> dict[str, Any] | str:
    """Values for `names` of `spec`, or why there are none (the attempt then fails)."""
    if not names:
        return {}
    reply = await client.chat(values_request(spec, names, seed, temperature))
    call_ids.append(reply.call_id)
    data = reply.json() if reply.ok else None
    proposed = data if isinstance(data, dict) else {}
    rng = random.Random(f"{seed}:{spec.name}")
    values: dict[str, Any] = {}
    for name in names:
        schema = spec.properties.get(name, {})
        value = proposed.get(name)
        if value is not None and value != "" and jsonschema.Draft202012Validator(schema).is_valid(value):
            short = as_a_user_says_it(value)
            values[name] = short if jsonschema.Draft202012Validator(schema).is_valid(short) else value
            continue
        ok, fallback = from_schema(schema, rng)
        if not ok:
            return f"{spec.name}: no usable value proposed for {name!r}"
        values[name] = fallback
    return values
