"""Free-running evaluation against the real local llama.cpp server, executing through the dispatcher."""

import asyncio
import json

import pytest

from magnet_dagster.evaluation.runner import free_running
from magnet_dagster.evaluation.scoring import FREE_RUNNING
from magnet_dagster.llm import local_server
from magnet_dagster.llm.backends import BackendSettings, make_backend
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.executors import ExecutorFactory
from magnet_dagster.tools.formats import read_tool_set

pytestmark = pytest.mark.integration


def _call(name, **args):
    return {"id": "c0", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def test_free_running_evaluation_on_the_local_server(tmp_path, monkeypatch):
    monkeypatch.delenv("MAGNET_STUDENT", raising=False)
    folder = tmp_path / "math"
    folder.mkdir()
    (folder / "toolset.yaml").write_text("bfcl_classes: [MathAPI]\nbfcl_functions: [add, multiply]\n")
    source = read_tool_set(folder)
    specs = {f.name: f for f in source.functions}
    trajectory = {
        "trajectory_id": "hand-made", "tools": [s.openai_tool() for s in specs.values()],
        "messages": [
            {"role": "system", "content": "You are a helpful assistant that can call functions."},
            {"role": "user", "content": "What is 12 plus 30?"},
            {"role": "assistant", "content": None, "tool_calls": [_call("add", a=12, b=30)]},
            {"role": "tool", "tool_call_id": "c0", "content": '{"result": 42}'},
            {"role": "assistant", "content": "It is 42."},
            {"role": "user", "content": "Now multiply 42 by 2."},
            {"role": "assistant", "content": None, "tool_calls": [_call("multiply", a=42, b=2)]},
        ],
    }
    factory = ExecutorFactory(source.executor, specs)
    server = local_server.acquire()
    try:
        backend = make_backend(BackendSettings.from_env("student"), server.base_url, server.model_name)
        client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j").open()

        async def run():
            try:
                return await free_running(client, trajectory, specs, [], lambda: factory.new(0))
            finally:
                await client.aclose()

        verdicts = asyncio.run(run())
    finally:
        local_server.release(server)
    assert [v.mode for v in verdicts] == [FREE_RUNNING, FREE_RUNNING]
    assert all(v.kind == "call" and v.state_match is not None for v in verdicts)
    for v in verdicts:
        assert v.verdict == (v.reason is None)
    calls = LineageStore(tmp_path / "l.duckdb").query("SELECT count(*) AS n FROM llm_calls WHERE NOT cache_hit")
    requests = sum(v.call_steps + (not v.forced_quit) for v in verdicts if v.got is not None)
    assert calls[0]["n"] == requests >= 2, "one student request per step, made for real, until it answers"
