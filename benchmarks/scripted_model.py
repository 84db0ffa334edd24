"""A scripted OpenAI-compatible chat model (teacher and student) for the scale benchmark.

It follows the request's structure, never a prompt's wording, like the fast tests' fake
(`tests/fake_teacher.py`; `tests/` is not a package benchmarks import, so the schema walk is
written again here): with `response_format` it answers JSON valid for the schema; with
`tools` and no schema it calls the offered tool whose parameters the latest message states
most, with arguments filled from that tool's parameter schema, and after a tool result it
reports the result in words.

Values are copied the way a model copies them: a value stated for the field's name in the
latest message (`name=value`, `"name": value`, `name='value'`, and inside a call written
`fn(name=value)` the arguments after that function's name) wins; an enum value the message
mentions (when it mentions only some) comes next; otherwise a realistic value is made up from
the field's name, type and format (ids, emails, dates, names, counts), seeded by a hash of
the request body, so answers vary across requests but a rerun repeats them. An enum whose
every value the message lists (a judge's verdicts, say) is chosen by the hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

_CODE = re.compile(r"`([A-Za-z_][\w.]{0,60})`")
_LITERAL = r"""("(?:[^"\\]|\\.){0,200}"|'(?:[^'\\]|\\.){0,200}'|-?\d+(?:\.\d+)?(?![\w.])|true|false|True|False)"""
WORDS = [
    "Lisbon",
    "harbour",
    "summer",
    "Porto",
    "classic",
    "river",
    "north",
    "garden",
    "Oslo",
    "studio",
    "blue",
    "market",
    "Austin",
    "family",
    "express",
    "Nairobi",
    "quarterly",
    "green",
    "Osaka",
    "central",
]
FIRST = ["ana", "li", "marta", "omar", "sofia", "kenji", "ines", "lucas"]
JSON_TYPE_NAMES = {"string", "integer", "number", "boolean", "object", "array", "null"}


def response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema a request's `response_format` asks for (OpenAI `json_schema` or llama.cpp's form)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else fmt.get("schema")
    return schema if isinstance(schema, dict) else None


_STATED = re.compile(rf"""(?<![\w.])["']?([A-Za-z_]\w{{0,80}})["']?\s*[=:]\s*{_LITERAL}""")


def stated_values(text: str | None) -> dict[str, list[str]]:
    """Every `name=literal` / `"name": literal` in `text`, as name -> raw literals in order
    (one pass over the text; values that are JSON type names, as in a signature, left out)."""
    out: dict[str, list[str]] = {}
    for m in _STATED.finditer(text or ""):
        if m.group(2).strip("\"'") not in JSON_TYPE_NAMES:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


@dataclass
class _Source:
    """What values are copied from: the latest message's text (and what it states, parsed once),
    and the request's hash for choices."""

    text: str
    seed: bytes
    pairs: dict[str, list[str]]
    #: which stated occurrence of a name to copy, counted from the end (the i-th of n parallel items)
    from_end: int = 1
    #: what the argument text of the call being filled (`fn(a=1, b='x')`) states, tried first
    scope: dict[str, list[str]] | None = None

    def stated(self, key: str | None) -> Any:
        """The literal stated for `key`, or None."""
        if not key:
            return None
        for pairs in (self.scope, self.pairs):
            found = (pairs or {}).get(key)
            if found:
                return _literal(found[-min(self.from_end, len(found))])
        return None

    def item(self, from_end: int, scope: dict[str, list[str]] | None = None) -> _Source:
        return _Source(self.text, self.seed, self.pairs, from_end, scope)

    def number(self, salt: str, low: int, high: int) -> int:
        """A seeded integer in [low, high]."""
        return low + int.from_bytes(hashlib.sha256(self.seed + salt.encode()).digest()[:4], "big") % (high - low + 1)

    def pick(self, options: list[Any], salt: str) -> Any:
        return options[self.number(salt, 0, len(options) - 1)]


def _literal(raw: str) -> Any:
    if raw in ("true", "True"):
        return True
    if raw in ("false", "False"):
        return False
    if raw[:1] in "\"'":
        body = raw[1:-1]
        try:
            return json.loads(f'"{body}"') if raw[0] == '"' else body.replace("\\'", "'")
        except ValueError:
            return body
    return float(raw) if "." in raw else int(raw)


def answer(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message for one `/chat/completions` request body."""
    messages = body.get("messages") or [{"role": "user", "content": ""}]
    seed = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()
    text = _text(messages[-1])
    source = _Source(text, seed, stated_values(text))
    schema = response_schema(body)
    if schema is not None:
        value = _fill(schema, source, None)
        if isinstance(value, dict) and "content" in value:
            value["content"] = _content(messages)
        return {"role": "assistant", "content": json.dumps(value)}
    tools = [t["function"] for t in body.get("tools") or [] if isinstance((t or {}).get("function"), dict)]
    if tools and messages[-1].get("role") != "tool":
        tool = max(tools, key=lambda t: _stated_parameters(t, source))  # first offered on a tie
        args = _fill(tool.get("parameters") or {"type": "object"}, source, None)
        call = {
            "id": "call_" + source.seed.hex()[:8],
            "type": "function",
            "function": {"name": tool["name"], "arguments": json.dumps(args)},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": _content(messages) if tools else "Could you tell me more?"}


def completion(body: dict[str, Any], request_bytes: int) -> dict[str, Any]:
    """A whole `chat.completion` response (token counts estimated at four bytes a token)."""
    message = answer(body)
    out = json.dumps(message.get("content") or message.get("tool_calls") or "")
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    prompt_tokens, completion_tokens = max(1, request_bytes // 4), max(1, len(out) // 4)
    return {
        "id": "scripted",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _stated_parameters(tool: dict[str, Any], source: _Source) -> int:
    props = (tool.get("parameters") or {}).get("properties") or {}
    return sum(source.stated(name) is not None for name in props)


def _content(messages: list[dict[str, Any]]) -> str:
    """Report the turn's latest tool result, or ask for the name the latest message quotes."""
    turn: list[dict[str, Any]] = []
    for m in messages:
        turn = [] if m.get("role") == "user" else [*turn, m]
    results = [m for m in turn if m.get("role") == "tool"]
    if results:
        return f"Here is what I found: {results[-1].get('content')}"
    names = _CODE.findall(_text(messages[-1]))
    return f"Could you tell me the {names[0]}?" if names else "Could you tell me which value to use?"


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _mentioned(names: list[Any], text: str) -> list[Any]:
    """`names` that occur in `text`, in order of first occurrence."""
    found = [(text.find(str(n)), n) for n in names if isinstance(n, str) and str(n) in text]
    return [n for _, n in sorted(found, key=lambda p: p[0])]


def _variant_name(variant: dict[str, Any]) -> str | None:
    enum = ((variant.get("properties") or {}).get("name") or {}).get("enum") or [None]
    return enum[0]


def _call_scopes(name: str, text: str) -> list[str]:
    """The argument text of each `name(...)` written in `text` (a hint's calls)."""
    return [m.group(1) for m in re.finditer(rf"(?<![\w.]){re.escape(name)}\((.*?)\)(?:;|\.?\s*$|\.\s)", text, re.S)]


def _calls(items: dict[str, Any], source: _Source, minimum: int, maximum: int | None) -> list[Any]:
    """Calls among the offered functions (`anyOf` variants): one per written `fn(...)` in the text,
    else one per offered function the text mentions, in order of mention."""
    by_name = {_variant_name(v): v for v in items["anyOf"]}
    written = sorted(
        (m.start(), name)
        for name in by_name
        if name
        for m in re.finditer(rf"(?<![\w.]){re.escape(name)}\(", source.text)
    )
    order = [name for _, name in written] or _mentioned(list(by_name), source.text) or list(by_name)
    count = max(minimum, min(len(order), maximum or len(order)), 1)
    names = [order[i % len(order)] for i in range(count)]
    out, seen = [], {}
    for name in names:
        nth = seen[name] = seen.get(name, 0) + 1
        scopes = _call_scopes(name, source.text) if name else []
        scope = stated_values(scopes[nth - 1]) if nth <= len(scopes) else None
        # the i-th of k parallel calls of one function copies the i-th of the last k stated values
        from_end = names.count(name) - nth + 1
        out.append(_fill(by_name[name], source.item(from_end, scope), None))
    return out


def _fill(schema: dict[str, Any], source: _Source, key: str | None) -> Any:
    stated = source.stated(key) if key not in (None, "query", "content", "reason") else None
    if "enum" in schema:
        options = list(schema["enum"])
        if stated in options:
            return stated
        mentioned = _mentioned(options, source.text)
        if mentioned and len(mentioned) < len(options):
            return mentioned[0]
        return source.pick(options, key or "")
    if "anyOf" in schema:
        return _fill(schema["anyOf"][0], source, key)
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        # required fields and optional ones the message states (a hint's `page=3`); all when none is required
        names = [*required, *(n for n in props if n not in required and source.stated(n) is not None)]
        names = names if required else list(props)
        return {n: _fill(props.get(n, {}), source, n) for n in names}
    if kind == "array":
        items = schema.get("items") or {}
        if isinstance(items, dict) and items.get("anyOf"):
            return _calls(items, source, int(schema.get("minItems", 1)), schema.get("maxItems"))
        count = max(int(schema.get("minItems", 1)), 1)
        return [_fill(items, source.item(count - i, source.scope), key) for i in range(count)]
    if kind in ("integer", "number"):
        if isinstance(stated, int | float) and not isinstance(stated, bool):
            return int(stated) if kind == "integer" else float(stated)
        low = int(schema.get("minimum", 1))
        value = source.number(key or "n", low, max(low, int(schema.get("maximum", 50))))
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return stated if isinstance(stated, bool) else source.pick([True, False], key or "")
    if kind == "string":
        if key == "query":  # the latest message's last two lines, within the schema's length
            lines = [line for line in source.text.splitlines() if line.strip()][-2:]
            echo = " ".join(" ".join(lines).split())[-int(schema.get("maxLength", 300)) :]
            return echo if len(echo) >= schema.get("minLength", 0) else "Please help me with this request."
        if key == "reason":
            return "the output fits the input"[: int(schema.get("maxLength", 160))]
        if key == "content":
            return "Could you tell me which value to use?"
        if isinstance(stated, str) and stated.strip():
            return stated
        return _made_up(key or "", schema, source)
    return {}


def _made_up(key: str, schema: dict[str, Any], source: _Source) -> str:
    """A realistic string for a field nothing in the message states, from its name and format."""
    k = key.lower()
    n = source.number(k, 10_000, 99_999)
    hint = f"{schema.get('format', '')} {schema.get('description', '')}".lower()
    if k.endswith("_id") or k == "id":
        return f"{(k.removesuffix('_id') or 'id')[:3].upper()}-{n}"
    if "email" in k:
        return f"{source.pick(FIRST, k)}.{source.pick(FIRST, k + '2')}@example.com"
    if "date" in hint or "yyyy" in hint or k.endswith(("_at", "date", "since")):
        return f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}"
    if "url" in k:
        return f"https://files.example.com/{n}"
    return f"{source.pick(WORDS, k)} {source.pick(WORDS, k + '2').lower()}"
