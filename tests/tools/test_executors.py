"""Executors: BFCL classes run with generated starting states; simulated tools are schema-checked and cached."""

import asyncio
import json

from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools import bfcl
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.executors import ExecutorFactory, SimulatedExecutor
from magnet_dagster.tools.spec import FunctionSpec
from tests.fakes import ScriptedFakeBackend

WEATHER = FunctionSpec("get_weather", "Weather for a city.",
                       {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                       returns={"type": "object", "properties": {"temp_c": {"type": "number"}}, "required": ["temp_c"]})


def _simulated(tmp_path, answers):
    backend = ScriptedFakeBackend(lambda r: answers.pop(0))
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j").open()
    return SimulatedExecutor({"get_weather": WEATHER}, client), backend, client


def test_simulated_result_must_match_the_returns_schema(tmp_path):
    executor, _, client = _simulated(tmp_path, [{"temp_c": "warm"}])
    result = asyncio.run(executor.execute(ToolCall("get_weather", {"city": "Oslo"})))
    client.close()
    assert result.simulated and not result.ok
    assert result.output == {"error": "get_weather: simulated result breaks its returns schema: 'warm' is not of type 'number'"}


def test_simulated_results_are_cached_per_function_and_canonical_arguments(tmp_path):
    executor, backend, client = _simulated(tmp_path, [{"temp_c": 3.5}, {"temp_c": 20.0}])
    first = asyncio.run(executor.execute(ToolCall("get_weather", {"city": "Oslo"})))
    again = asyncio.run(executor.execute(ToolCall("get_weather", {"city": "Oslo"})))
    other = asyncio.run(executor.execute(ToolCall("get_weather", {"city": "Rome"})))
    client.close()
    assert first.output == again.output == {"temp_c": 3.5} and other.output == {"temp_c": 20.0}
    assert len(backend.requests) == 2 and first.llm_call_id


def test_factory_shares_the_simulation_cache_across_conversations(tmp_path):
    backend = ScriptedFakeBackend(lambda r: {"temp_c": 1.0})
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j").open()
    factory = ExecutorFactory({"kind": "simulated"}, {"get_weather": WEATHER}, client)
    for seed in (1, 2):
        asyncio.run(factory.new(seed).execute(ToolCall("get_weather", {"city": "Oslo"})))
    client.close()
    assert len(backend.requests) == 1 and not factory.executable


def test_bfcl_conversations_start_fresh_from_generated_states(tmp_path):
    specs = {f.name: f for f in bfcl.bfcl_functions(["TicketAPI"], lambda d, **kw: FunctionSpec(d["name"], "", {"type": "object"}))}
    factory = ExecutorFactory({"kind": "bfcl", "classes": ["TicketAPI"]}, specs)
    one, two = factory.new(7), factory.new(7)
    created = asyncio.run(one.execute(ToolCall("create_ticket", {"title": "New"})))
    assert created.ok and one.state() != two.state(), "instances are not shared between conversations"
    assert factory.new(7).state() == two.state(), "the same seed gives the same starting state"
    assert factory.new(8).state() != two.state()


def test_generated_states_are_not_bfcl_test_scenarios():
    state = bfcl.initial_state("TicketAPI", 3)
    titles = {t["title"] for t in state["ticket_queue"]}
    data = bfcl.package_dir() / "data"
    scenarios = [json.loads(line) for f in data.glob("BFCL_v*_multi_turn_*.json") for line in f.read_text().splitlines()
                 if line.strip()]
    bfcl_titles = {t.get("title") for s in scenarios
                   for t in (s.get("initial_config", {}).get("TicketAPI", {}).get("ticket_queue") or [])}
    assert scenarios, "BFCL's multi-turn data is where the check looks"
    assert not titles & bfcl_titles
