"""What a model reply must satisfy before anything parses, caches or journals it.

A teacher or student is an untrusted input: one reply with a lone surrogate made every later
journal ingest fail (DuckDB rejects it as malformed JSON), and one reply nested 100,000 deep
crashed `json.loads` and sat in the cache for every rerun. So replies are first made valid
Unicode (`scrub`), then checked against `Limits` (`violation`) with code that neither recurses
nor parses, so checking a hostile reply cannot itself blow up.
"""

from __future__ import annotations

import re
from typing import Any

from magnet_dagster.config import Limits

#: Characters that change JSON nesting or string state; everything else is skipped by the scan.
_JSON_MARKS = re.compile(r'[\[\]{}"\\]')


def scrub_text(text: str) -> str:
    """`text` as valid Unicode: lone surrogates become U+FFFD, surrogate pairs are joined.

    Valid text (the common case) is returned as is after one encode attempt.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def scrub(value: Any) -> Any:
    """A copy of a JSON-like value with every string (keys too) passed through `scrub_text`.

    Iterative, so a deeply nested value cannot raise RecursionError here.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if not isinstance(value, (dict, list, tuple)):
        return value
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, dict[Any, Any] | list[Any]]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, (dict, list, tuple)):
                copy: dict[Any, Any] | list[Any] = {} if isinstance(item, dict) else []
                stack.append((item, copy))
                item = copy
            elif isinstance(item, str):
                item = scrub_text(item)
            if isinstance(target, dict):
                target[scrub_text(key) if isinstance(key, str) else key] = item
            else:
                target.append(item)
    return root


def json_depth(text: str) -> int:
    """Deepest `[`/`{` nesting in `text`, counting only brackets outside JSON strings.

    A scan, not a parse: linear, no recursion, and meaningful for prose around JSON too.
    """
    depth = deepest = 0
    in_string = False
    escaped_at = -1  # index of the character a backslash inside a string escapes
    for match in _JSON_MARKS.finditer(text):
        mark, at = match.group(), match.start()
        if in_string:
            if at == escaped_at:
                continue
            if mark == "\\":
                escaped_at = at + 1
            elif mark == '"':
                in_string = False
        elif mark == '"':
            in_string = True
        elif mark in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif mark in "]}":
            depth = max(depth - 1, 0)
    return deepest


def shape_error(message: Any) -> str | None:
    """Why `message` is not an OpenAI-shaped assistant message the parsers can take, or None."""
    if not isinstance(message, dict):
        return f"reply is a {type(message).__name__}, not a message object"
    if not isinstance(message.get("content"), (str, type(None))):
        return f"reply content is a {type(message['content']).__name__}, not text"
    calls = message.get("tool_calls")
    if calls is None:
        return None
    if not isinstance(calls, list):
        return f"reply tool_calls is a {type(calls).__name__}, not a list"
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return f"reply tool call {i} has no function name"
        if not isinstance(function.get("arguments"), (str, type(None))):
            return f"reply tool call {i} arguments are not a JSON string"
    return None


def parsed_texts(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, text) for the parts of a well-shaped reply that get parsed: content, tool-call arguments."""
    texts = [("content", message.get("content") or "")]
    for i, call in enumerate(message.get("tool_calls") or []):
        texts.append((f"tool call {i} arguments", call["function"].get("arguments") or ""))
    return texts


def violation(message: Any, limits: Limits) -> str | None:
    """Why `message` must not be used (which limit, with the numbers), or None when it is fine."""
    shape = shape_error(message)
    if shape is not None:
        return shape
    texts = parsed_texts(message)
    chars = sum(len(text) for _, text in texts)
    if chars > limits.max_reply_chars:
        return (
            f"reply too long: {chars} characters of content and tool-call arguments "
            f"> max_reply_chars {limits.max_reply_chars}"
        )
    for where, text in texts:
        depth = json_depth(text)
        if depth > limits.max_reply_depth:
            return f"reply nested too deep: {where} has JSON depth {depth} > max_reply_depth {limits.max_reply_depth}"
    return None
