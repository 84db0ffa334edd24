"""A scripted fake LLM for the fast asset tests (never the integration path).

It follows the request's structure, not a prompt's wording: with a response schema it
answers JSON that fits the schema; with tools and no schema it calls the first offered tool.
Values come from the literals of the latest message (numbers and quoted strings, in order),
as a copying model would; `query` strings echo the latest message's last lines; a `content` string
reports the latest tool result when the turn has one, else asks for the latest message's
`code`-quoted name; enum choices and booleans are seeded by a hash of the request, so
answers vary but reruns repeat.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.llm.client import LLMRequest, RawReply

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_QUOTED = re.compile(r'"([^"\\]{1,60})"')
_CODE = re.compile(r"`([A-Za-z_][\w.]{0,60})`")
TAIL = 400


@dataclass
class _Literals:
    numbers: list[float]
    strings: list[str]

    @classmethod
    def of(cls, text: str) -> "_Literals":
        tail = text[-TAIL:]
        return cls([float(n) for n in _NUMBER.findall(tail)], [s for s in _QUOTED.findall(tail) if " " in s or s.isalpha()])


@dataclass
class SchemaFollowingFake:
    """A fake teacher and student; records every request it answered."""

    name: str = "fake"
    model: str = "schema-following-fake"
    requests: list[LLMRequest] = field(default_factory=list)

    async def complete(self, request: LLMRequest) -> RawReply:
        self.requests.append(request)
        last = _text(request.messages[-1])
        seed = hashlib.sha256(json.dumps(request.canonical(), sort_keys=True, default=str).encode()).digest()
        if request.response_schema is not None:
            value = _fill(request.response_schema, last, _Literals.of(last), seed, None)
            if isinstance(value, dict) and "content" in value:
                value["content"] = _content(request.messages)
            return RawReply({"role": "assistant", "content": json.dumps(value)}, 40, 12)
        if request.tools:
            tool = request.tools[0]["function"]
            args = _fill(tool.get("parameters") or {"type": "object"}, last, _Literals.of(last), seed, None)
            call = {"id": "call_0", "type": "function", "function": {"name": tool["name"], "arguments": json.dumps(args)}}
            return RawReply({"role": "assistant", "content": None, "tool_calls": [call]}, 40, 12)
        return RawReply({"role": "assistant", "content": "Could you tell me more?"}, 40, 6)

    async def aclose(self) -> None:
        return None


def _content(messages: Any) -> str:
    """Report the turn's latest tool result, or ask for the name the latest message quotes."""
    turn: list[dict[str, Any]] = []
    for m in messages:
        turn = [] if m["role"] == "user" else [*turn, m]
    results = [m for m in turn if m["role"] == "tool"]
    if results:
        return f"Here is what I found: {results[-1]['content']}"
    names = _CODE.findall(_text(messages[-1]))
    return f"Could you tell me the {names[0]}?" if names else "Could you tell me which value to use?"


def _text(message: dict[str, Any]) -> str:
    return str(message.get("content") or "")


def _pick(options: list[Any], seed: bytes, salt: str) -> Any:
    return options[hashlib.sha256(seed + salt.encode()).digest()[0] % len(options)]


def _mentioned(names: list[Any], text: str) -> list[Any]:
    """`names` that occur in `text`, in order of first occurrence."""
    found = [(text.find(str(n)), n) for n in names if isinstance(n, str) and str(n) in text]
    return [n for _, n in sorted(found, key=lambda p: p[0])]


def _variant_name(variant: dict[str, Any]) -> str | None:
    enum = ((variant.get("properties") or {}).get("name") or {}).get("enum") or [None]
    return enum[0]


def _fill(schema: dict[str, Any], text: str, lits: _Literals, seed: bytes, key: str | None) -> Any:
    if "enum" in schema:
        mentioned = _mentioned(schema["enum"], text)
        return mentioned[0] if mentioned else _pick(schema["enum"], seed, key or "")
    if "anyOf" in schema:
        return _fill(schema["anyOf"][0], text, lits, seed, key)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {n: _fill(props.get(n, {}), text, lits, seed, n) for n in names}
    if kind == "array":
        items = schema.get("items") or {}
        count = max(schema.get("minItems", 1), 1)
        variants = items.get("anyOf")
        if variants:  # calls: the offered functions in the order the message mentions them
            by_name = {_variant_name(v): v for v in variants}
            order = _mentioned(list(by_name), text) or list(by_name)
            return [_fill(by_name[order[i % len(order)]], text, lits, seed, key) for i in range(count)]
        return [_fill(items, text, lits, seed, key) for _ in range(count)]
    if kind in ("integer", "number"):
        value = lits.numbers.pop(0) if lits.numbers else float(schema.get("minimum", 1))
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return _pick([True, False], seed, key or "")
    if kind == "string":
        if key == "query":  # the latest message's last two lines, within the schema's length
            lines = [line for line in text.splitlines() if line.strip()][-2:]
            echo = " ".join(" ".join(lines).split())[-int(schema.get("maxLength", 300)):]
            return echo if len(echo) >= schema.get("minLength", 0) else "Please help me with this request."
        if key in ("reason", "content") or not lits.strings:
            return "Could you tell me which value to use?" if key != "reason" else "fits"
        return lits.strings.pop(0)
    return {}
