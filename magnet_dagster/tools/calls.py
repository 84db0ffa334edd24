"""The one call model and the one matcher, shared by synthesis checks and evaluation.

A call arrives in one of four shapes: OpenAI `tool_calls`, Hermes-style `<tool_call>{...}`
tags, JSON in the message content, or a Python-style string `f(a=1)`. All are parsed as
data (`json` or `ast` plus `ast.literal_eval` of each argument): model text is never run.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from magnet_dagster.tools.spec import FunctionSpec


def leaves(value: Any) -> list[Any]:
    """The scalar values inside a JSON value (arguments, results), in order."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in leaves(v)]
    return [value]


class CallParseError(ValueError):
    """Text that is not a literal function call."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        args = data.get("arguments", data.get("parameters", {}))
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        if not isinstance(args, dict):
            raise CallParseError(f"arguments of {data.get('name')!r} are not an object")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise CallParseError("call has no name")
        return cls(name=name, arguments=args)

    def openai(self, call_id: str) -> dict[str, Any]:
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }

    def python(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.name}({args})"


def parse_python_call(text: str, parameter_order: Callable[[str], list[str] | None] | None = None) -> ToolCall:
    """Parse `name(key=literal, ...)`; refuse anything else (attribute chains, calls, names).

    Positional literals are accepted only when `parameter_order(name)` says which
    parameter each position is (BFCL's ground truth writes `cd('docs')`).
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise CallParseError(f"not a call: {text!r} ({exc.msg})") from exc
    node = tree.body
    if not isinstance(node, ast.Call):
        raise CallParseError(f"not a call: {text!r}")
    if not isinstance(node.func, ast.Name):
        raise CallParseError(f"only plain function names may be called, not {ast.unparse(node.func)!r}")
    arguments: dict[str, Any] = {}
    if node.args:
        order = parameter_order(node.func.id) if parameter_order else None
        if order is None:
            raise CallParseError(f"{node.func.id}: positional arguments are not allowed; use key=value")
        if len(node.args) > len(order):
            raise CallParseError(f"{node.func.id}: {len(node.args)} positional arguments for {len(order)} parameters")
        for name, arg in zip(order, node.args):
            if isinstance(arg, ast.Starred):
                raise CallParseError(f"{node.func.id}: *args are not allowed")
            try:
                arguments[name] = ast.literal_eval(arg)
            except (ValueError, SyntaxError) as exc:
                raise CallParseError(
                    f"{node.func.id}: argument {name!r} is not a literal: {ast.unparse(arg)!r}"
                ) from exc
    for kw in node.keywords:
        if kw.arg is None:
            raise CallParseError(f"{node.func.id}: **kwargs are not allowed")
        try:
            arguments[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, SyntaxError) as exc:
            raise CallParseError(
                f"{node.func.id}: argument {kw.arg!r} is not a literal: {ast.unparse(kw.value)!r}"
            ) from exc
    return ToolCall(node.func.id, arguments)


_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_JSON_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def _calls_from_json(value: Any) -> list[ToolCall]:
    if isinstance(value, dict):
        for key in ("tool_calls", "calls"):
            if isinstance(value.get(key), list):
                return [c for item in value[key] for c in _calls_from_json(item)]
        if "function" in value and isinstance(value["function"], dict):
            return [ToolCall.from_dict(value["function"])]
        if "name" in value:
            return [ToolCall.from_dict(value)]
        return []
    if isinstance(value, list):
        return [c for item in value for c in _calls_from_json(item)]
    return []


def parse_message_calls(message: dict[str, Any]) -> list[ToolCall]:
    """Calls in an assistant message: native `tool_calls`, then `<tool_call>` tags, then JSON."""
    native = message.get("tool_calls") or []
    if native:
        return [ToolCall.from_dict(tc.get("function", tc)) for tc in native]
    content = message.get("content") or ""
    if not isinstance(content, str) or not content.strip():
        return []
    tagged = _TOOL_CALL_TAG.findall(content)
    if tagged:
        calls: list[ToolCall] = []
        for body in tagged:
            try:
                calls.extend(_calls_from_json(json.loads(body)))
            except json.JSONDecodeError:
                continue
        return calls
    for candidate in [content, *_JSON_FENCE.findall(content)]:
        try:
            return _calls_from_json(json.loads(candidate))
        except json.JSONDecodeError:
            continue
    return []


# ---------------------------------------------------------------- matching


def _norm(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        return " ".join(value.split()).lower()
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def call_mismatch(expected: ToolCall, got: ToolCall, spec: FunctionSpec | None) -> str | None:
    """Why `got` does not match `expected` (None when it does).

    Rules: same name; every required parameter given; no unknown parameter; each value
    equal after normalising (int == float, strings by case and spacing); a parameter one
    side leaves out matches only if the other side gives its default.
    """
    if expected.name != got.name:
        return f"wrong function: expected {expected.name}, got {got.name}"
    props = spec.properties if spec else {}
    required = spec.required if spec else list(expected.arguments)
    for key in required:
        if key not in got.arguments:
            return f"{got.name}: missing required argument {key!r}"
    if spec:
        unknown = sorted(set(got.arguments) - set(props))
        if unknown:
            return f"{got.name}: unknown argument(s) {unknown}"
        for key, value in got.arguments.items():
            if not _type_ok(value, props[key].get("type")):
                return f"{got.name}: argument {key!r} has the wrong type ({type(value).__name__})"
    for key in set(expected.arguments) | set(got.arguments):
        default = props.get(key, {}).get("default")
        want = expected.arguments.get(key, default)
        have = got.arguments.get(key, default)
        if _norm(want) != _norm(have):
            return f"{got.name}: argument {key!r} expected {want!r}, got {have!r}"
    return None


def _type_ok(value: Any, json_type: Any) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list | tuple),
        "object": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    if json_type is None:
        return True
    types = json_type if isinstance(json_type, list) else [json_type]
    return any(checks.get(t, lambda v: True)(value) for t in types)


def calls_mismatch(expected: list[ToolCall], got: list[ToolCall], specs: dict[str, FunctionSpec]) -> str | None:
    """AST match of two turns' calls, order-free: None when every call pairs up."""
    if len(expected) != len(got):
        return f"expected {len(expected)} call(s), got {len(got)}"
    remaining = list(got)
    for want in expected:
        reasons = []
        for i, have in enumerate(remaining):
            reason = call_mismatch(want, have, specs.get(want.name))
            if reason is None:
                del remaining[i]
                break
            reasons.append(reason)
        else:
            return reasons[0] if len(reasons) == 1 else f"no call matches {want.python()}: {reasons[0]}"
    return None
