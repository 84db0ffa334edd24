"""Back-and-forth translation control flow with a scripted fake teacher (named as such):
parallel turns, irrelevance turns and the round-trip check."""

import asyncio
import json

from magnet_dagster.graph.paths import IRRELEVANT, SignaturePath, Turn
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.synthesis.translation import (
    PathContext, PathRejection, TranslationSettings, offered_tools, translate_path,
)
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.executors import Execution
from magnet_dagster.tools.spec import FunctionSpec
from tests.fakes import ScriptedFakeBackend

WEATHER = FunctionSpec("get_weather", "Get the weather for a city.",
                       {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TIME = FunctionSpec("get_time", "Get the local time in a city.",
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
SPECS = {"get_weather": WEATHER, "get_time": TIME}


class EchoExecutor:
    """Executes by echoing: enough for control flow."""

    async def execute(self, call):
        return Execution({"ok": True, **call.arguments})

    def state(self):
        return None

    def close(self):
        return None


def _run(tmp_path, path, script, distractors=(), round_trip=False):
    backend = ScriptedFakeBackend(lambda r: _values(r) or script(r))
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "journal").open()
    result = asyncio.run(translate_path(PathContext(client, path, SPECS, {}, EchoExecutor(), list(distractors),
                                                    TranslationSettings(max_attempts=1, round_trip=round_trip))))
    client.close()
    return result, backend


def _values(request):
    """Proposed parameter values (a request whose schema asks for parameters, not a query or calls)."""
    wanted = set((request.response_schema or {}).get("properties", {})) - {"query", "calls"}
    return {name: "Oslo" for name in wanted} if wanted else None


def _prompt(request):
    return request.messages[0]["content"]


def _not_values(backend):
    return [r for r in backend.requests if _values(r) is None]


def test_parallel_turn_asks_for_one_value_set_per_call(tmp_path):
    def teacher(request):
        if "Request:" in _prompt(request) and "Functions to use" not in _prompt(request):
            return {"query": "What is the weather in Oslo and in Rome?"}
        return {"calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}},
                          {"name": "get_weather", "arguments": {"city": "Rome"}}]}

    path = SignaturePath(walk=("get_weather",), turns=(Turn(("get_weather", "get_weather")),), shape="parallel")
    result, backend = _run(tmp_path, path, teacher)
    back = _prompt(_not_values(backend)[0]).rsplit("Task:", 1)[1]
    assert "Do it 2 times, once for each set of values." in back
    assert "(1) city=" in back and "; (2) city=" in back
    forward = _not_values(backend)[1].response_schema["properties"]["calls"]
    assert forward["minItems"] == forward["maxItems"] == 2
    assert [c.arguments["city"] for c in result[0].calls] == ["Oslo", "Rome"]


def test_irrelevance_turn_never_offers_the_function_it_asks_for(tmp_path):
    path = SignaturePath(walk=("get_weather",), turns=(Turn((), kind=IRRELEVANT, target=("get_weather",)),),
                         shape="irrelevance")
    assert offered_tools(path, 0, ["get_time", "get_weather"]) == ["get_time"]
    result, backend = _run(tmp_path, path, lambda r: {"query": "Will it rain in Oslo tomorrow?"}, ["get_time"])
    assert len(_not_values(backend)) == 1, "no forward translation: the reference makes no call"
    assert result[0].kind == IRRELEVANT and result[0].calls == [] and result[0].tools == ["get_time"]


def _round_trip_teacher(second_answer):
    def teacher(request):
        prompt = _prompt(request)
        if "Functions to use" not in prompt:
            return {"query": "What's the weather like in Lima right now?"}
        offered = request.response_schema["properties"]["calls"]
        if "minItems" in offered:  # the forward translation pins the turn's count
            return {"calls": [{"name": "get_weather", "arguments": {"city": "Lima"}}]}
        return {"calls": [second_answer]}  # the independent round trip
    return teacher


def test_round_trip_keeps_a_turn_whose_query_translates_back_to_the_same_calls(tmp_path):
    path = SignaturePath(walk=("get_weather",), turns=(Turn(("get_weather",)),))
    result, backend = _run(tmp_path, path, _round_trip_teacher({"name": "get_weather", "arguments": {"city": "Lima"}}),
                           ["get_time"], round_trip=True)
    assert not isinstance(result, PathRejection)
    round_trip = backend.requests[-1]
    assert "get_time" in _prompt(round_trip), "the round trip is offered every tool of the turn"
    assert len(result[0].llm_call_ids) == 4, "values, query, forward translation, round trip"


def test_round_trip_drops_a_turn_whose_query_is_ambiguous(tmp_path):
    path = SignaturePath(walk=("get_weather",), turns=(Turn(("get_weather",)),))
    result, _ = _run(tmp_path, path, _round_trip_teacher({"name": "get_time", "arguments": {"city": "Lima"}}),
                     ["get_time"], round_trip=True)
    assert isinstance(result, PathRejection) and result.rule == "round_trip"
    assert result.reason.startswith("the query translates back to other calls:")


def test_round_trip_is_off_by_default(tmp_path):
    path = SignaturePath(walk=("get_weather",), turns=(Turn(("get_weather",)),))
    result, backend = _run(tmp_path, path, _round_trip_teacher({"name": "get_time", "arguments": {"city": "x"}}),
                           ["get_time"])
    assert not isinstance(result, PathRejection) and len(_not_values(backend)) == 2
