"""The allow-list dispatcher: the only way a call (from a model or a file) reaches code.

A call runs only if its name is a public method registered for this conversation, its
arguments are literals (parsed, never evaluated) and it finishes within the time limit.
Whatever the tool raises comes back as an error result the trajectory can show.
"""

from __future__ import annotations

import copy
import inspect
import json
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from magnet_dagster.tools.calls import CallParseError, ToolCall, parse_python_call


class DispatchRefused(ValueError):
    """A call the allow-list does not permit."""


@dataclass
class Dispatcher:
    """Maps function names to bound public methods of this conversation's instances."""

    functions: dict[str, Callable[..., Any]]
    time_limit_s: float = 5.0

    @classmethod
    def for_instances(cls, instances: dict[str, object], allowed: set[str], time_limit_s: float = 5.0) -> Dispatcher:
        """Register `allowed` public callables of `instances` (class instances or modules)."""
        functions: dict[str, Callable[..., Any]] = {}
        for obj in instances.values():
            for name in sorted(allowed):
                if name.startswith("_") or name in functions:
                    continue
                if isinstance(obj, types.ModuleType):
                    fn = getattr(obj, name, None)
                    if inspect.isfunction(fn) and fn.__module__ == obj.__name__:
                        functions[name] = fn
                elif callable(getattr(type(obj), name, None)):
                    functions[name] = getattr(obj, name)
        return cls(functions=functions, time_limit_s=time_limit_s)

    def check(self, call: ToolCall) -> None:
        if call.name.startswith("_"):
            raise DispatchRefused(f"{call.name}: private names are never callable")
        if call.name not in self.functions:
            raise DispatchRefused(f"{call.name}: not an allowed function here")
        for key, value in call.arguments.items():
            if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
                raise DispatchRefused(f"{call.name}: argument name {key!r} is not allowed")
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise DispatchRefused(f"{call.name}: argument {key!r} is not a literal") from exc

    def execute(self, call: ToolCall) -> Any:
        """Run one allowed call; errors (refusal, exception, time-out) become `{"error": ...}`."""
        try:
            self.check(call)
        except DispatchRefused as exc:
            return {"error": str(exc)}
        arguments = copy.deepcopy(call.arguments)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = self.functions[call.name](**arguments)
            except Exception as exc:
                outcome["error"] = f"{call.name}: {type(exc).__name__}: {exc}"

        # A daemon thread: a call that overruns is abandoned (threads cannot be killed) and
        # can never keep the process from exiting.
        worker = threading.Thread(target=run, name=f"tool-{call.name}", daemon=True)
        worker.start()
        worker.join(self.time_limit_s)
        if worker.is_alive():
            return {"error": f"{call.name}: timed out after {self.time_limit_s}s"}
        if "error" in outcome:
            return {"error": outcome["error"]}
        return _jsonable(outcome.get("result"))

    def parameter_order(self, name: str) -> list[str] | None:
        """Parameter names of an allowed function in signature order (for positional literals)."""
        if name not in self.functions or name.startswith("_"):
            return None
        params = inspect.signature(self.functions[name]).parameters.values()
        return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def execute_text(self, text: str) -> Any:
        """Parse a Python-style call string with `ast` and run it; never `eval`."""
        try:
            call = parse_python_call(text, self.parameter_order)
        except CallParseError as exc:
            return {"error": str(exc)}
        return self.execute(call)

    def close(self) -> None:
        """Nothing to release: each call runs on its own short-lived thread."""


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)
