"""Making every function callable during synthesis: executed, or simulated by the teacher.

An executor serves one conversation (fresh instances, generated starting state). BFCL
classes and Python tools run through the allow-list dispatcher; functions without an implementation are
simulated: the teacher writes a result that must validate against the function's
`returns` schema, cached per (function, canonical arguments) within the tool set.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema

from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.tools import bfcl, python_tools
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.dispatcher import Dispatcher
from magnet_dagster.tools.spec import FunctionSpec

GENERIC_RESULT = {"type": "object"}


@dataclass(frozen=True)
class Execution:
    output: Any
    simulated: bool = False
    llm_call_id: str | None = None

    @property
    def ok(self) -> bool:
        return not (isinstance(self.output, dict) and "error" in self.output)


class Executor(Protocol):
    async def execute(self, call: ToolCall) -> Execution: ...

    def state(self) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


@dataclass
class DispatchExecutor:
    """In-process execution of allowed public methods (BFCL classes, Python tools)."""

    dispatcher: Dispatcher
    instances: dict[str, object]

    async def execute(self, call: ToolCall) -> Execution:
        return Execution(self.dispatcher.execute(call))

    def state(self) -> dict[str, Any] | None:
        return json.loads(json.dumps(instance_state(self.instances), default=_to_json))

    def close(self) -> None:
        self.dispatcher.close()


DATA = (dict, list, tuple, set, str, int, float, bool, type(None))


def instance_state(instances: dict[str, object]) -> dict[str, Any]:
    """Public data of each instance (its attributes) or module (its plain-data globals)."""
    return {
        name: {
            k: v
            for k, v in vars(obj).items()
            if not k.startswith("_") and (isinstance(v, DATA) if isinstance(obj, types.ModuleType) else not callable(v))
        }
        for name, obj in instances.items()
    }


def _to_json(value: Any) -> Any:
    return sorted(value) if isinstance(value, set) else str(value)


SIMULATE_PROMPT = (
    "You simulate the API function `{name}`: {description}\n"
    "It was called with these arguments: {arguments}\n"
    "Reply with only the JSON result the function would return."
)


@dataclass
class SimulatedExecutor:
    """The teacher plays the tool; results are schema-checked and cached per tool set."""

    specs: dict[str, FunctionSpec]
    client: LLMClient
    cache: dict[str, Execution] = field(default_factory=dict)

    async def execute(self, call: ToolCall) -> Execution:
        spec = self.specs.get(call.name)
        if spec is None:
            return Execution({"error": f"{call.name}: not a function of this tool set"}, simulated=True)
        key = json.dumps([call.name, call.arguments], sort_keys=True)
        if key in self.cache:
            return self.cache[key]
        schema = spec.returns or GENERIC_RESULT
        reply = await self.client.chat(
            LLMRequest(
                messages=[
                    {
                        "role": "user",
                        "content": SIMULATE_PROMPT.format(
                            name=spec.name,
                            description=spec.description,
                            arguments=json.dumps(call.arguments, sort_keys=True),
                        ),
                    }
                ],
                response_schema=schema,
                max_tokens=256,
            )
        )
        output = reply.json() if reply.ok else None
        if output is None:
            result = Execution(
                {"error": f"{call.name}: simulation failed ({reply.error or 'no JSON'})"},
                simulated=True,
                llm_call_id=reply.call_id,
            )
        else:
            try:
                jsonschema.validate(output, schema)
                result = Execution(output, simulated=True, llm_call_id=reply.call_id)
            except jsonschema.ValidationError as exc:
                result = Execution(
                    {"error": f"{call.name}: simulated result breaks its returns schema: {exc.message}"},
                    simulated=True,
                    llm_call_id=reply.call_id,
                )
        self.cache[key] = result
        return result

    def state(self) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        return None


def conversation_seed(path_id: str) -> int:
    """The starting-state seed of a path's conversation, so evaluation can rebuild that state."""
    return int(path_id[:8], 16)


@dataclass
class ExecutorFactory:
    """Builds one executor per conversation from the tool set's executor description."""

    executor: dict[str, Any]
    specs: dict[str, FunctionSpec]
    client: LLMClient | None = None
    time_limit_s: float = 5.0
    _simulated_cache: dict[str, Execution] = field(default_factory=dict)

    @property
    def executable(self) -> bool:
        """Whether every call really runs (so free-running evaluation and state checks make sense)."""
        return self.executor.get("kind") not in ("simulated", "mixed")

    def new(self, seed: int) -> Executor:
        """One conversation's executor: fresh instances in-process, the rest simulated."""
        instances: dict[str, object] = {}
        if self.executor.get("classes"):
            instances |= bfcl.new_instances(self.executor["classes"], seed)[0]
        if self.executor.get("python"):
            instances |= python_tools.new_instances(self.executor["python"], seed)
        kind = self.executor.get("kind")
        simulated = (
            {n for n, s in self.specs.items() if not s.executable}
            if kind == "mixed"
            else set(self.specs)
            if kind == "simulated"
            else set()
        )
        dispatch = None
        if instances:
            disp = Dispatcher.for_instances(instances, set(self.specs) - simulated, self.time_limit_s)
            dispatch = DispatchExecutor(disp, instances)
        if not simulated and dispatch is not None:
            return dispatch
        if self.client is None:
            raise ValueError("simulated tools need a teacher client")
        simulator = SimulatedExecutor(self.specs, self.client, self._simulated_cache)
        return simulator if dispatch is None else RoutingExecutor(dispatch, simulator, simulated)


@dataclass
class RoutingExecutor:
    """A tool set with both kinds: implemented functions run, the others are simulated."""

    dispatch: DispatchExecutor
    simulator: SimulatedExecutor
    simulated: set[str]

    async def execute(self, call: ToolCall) -> Execution:
        if call.name in self.simulated:
            return await self.simulator.execute(call)
        return await self.dispatch.execute(call)

    def state(self) -> dict[str, Any] | None:
        return self.dispatch.state()

    def close(self) -> None:
        self.dispatch.close()
