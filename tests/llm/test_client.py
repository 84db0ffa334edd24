"""The LLM client: cache, per-call record, failure budget, and the crash-safe journal (scripted fake backend)."""

import asyncio

from magnet_dagster.llm.client import LLMClient, LLMRequest, cache_key
from magnet_dagster.llm.journal import ingest_journals
from magnet_dagster.store.lineage import LineageStore
from tests.fakes import ScriptedFakeBackend

REQ = LLMRequest(messages=[{"role": "user", "content": "hi"}])


def _client(tmp_path, backend, **kw) -> LLMClient:
    return LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "journal", **kw).open()


def test_second_identical_request_is_a_recorded_cache_hit(tmp_path):
    backend = ScriptedFakeBackend(lambda r: "hello")
    client = _client(tmp_path, backend, tool_set="t", run_id="r1")
    first, second = asyncio.run(client.chat(REQ)), asyncio.run(client.chat(REQ))
    client.close()
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.content == "hello" and len(backend.requests) == 1
    rows = LineageStore(tmp_path / "l.duckdb").query("SELECT cache_hit, tool_set, run_id FROM llm_calls ORDER BY cache_hit")
    assert rows == [{"cache_hit": False, "tool_set": "t", "run_id": "r1"}, {"cache_hit": True, "tool_set": "t", "run_id": "r1"}]


def test_cache_survives_a_new_client_and_a_killed_one(tmp_path):
    backend = ScriptedFakeBackend(lambda r: "hello")
    killed = _client(tmp_path, backend)
    asyncio.run(killed.chat(REQ))
    # no close(): as if the process died; its journal is left behind, but its lock is gone
    killed._journal._file.close()
    again = _client(tmp_path, backend)
    reply = asyncio.run(again.chat(REQ))
    again.close()
    assert reply.cache_hit and len(backend.requests) == 1


def test_cache_key_changes_with_anything_that_changes_the_answer():
    base = cache_key("local", "m", REQ)
    assert cache_key("local", "m2", REQ) != base
    assert cache_key("vllm", "m", REQ) != base
    for change in ({"temperature": 0.5}, {"seed": 1}, {"max_tokens": 7}, {"response_schema": {"type": "object"}},
                   {"tools": [{"type": "function", "function": {"name": "f"}}]}):
        assert cache_key("local", "m", LLMRequest(messages=REQ.messages, **change)) != base


def test_a_failed_call_is_recorded_and_returned_not_raised(tmp_path):
    def boom(request):
        raise ConnectionError("server gone")

    client = _client(tmp_path, ScriptedFakeBackend(boom))
    reply = asyncio.run(client.chat(REQ))
    client.close()
    assert not reply.ok and "server gone" in reply.error
    assert client.stats.errors == 1 and client.stats.failure_rate == 1.0
    rows = LineageStore(tmp_path / "l.duckdb").query("SELECT outcome, error FROM llm_calls")
    assert rows[0]["outcome"] == "error" and "server gone" in rows[0]["error"]
    assert LineageStore(tmp_path / "l.duckdb").query("SELECT count(*) AS n FROM llm_cache")[0]["n"] == 0


def test_journals_held_by_a_live_client_are_left_alone(tmp_path):
    live = _client(tmp_path, ScriptedFakeBackend(lambda r: "x"))
    asyncio.run(live.chat(REQ))
    assert ingest_journals(tmp_path / "journal", LineageStore(tmp_path / "l.duckdb")).moved == 0
    live.close()
    assert LineageStore(tmp_path / "l.duckdb").query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == 1


def test_cost_estimate_is_zero_locally_and_unknown_for_unpriced_models(monkeypatch):
    from magnet_dagster.llm.pricing import estimated_cost_usd

    assert estimated_cost_usd("local", "SmolLM2", 10**6, 10**6) == 0.0
    assert estimated_cost_usd("gemini", "gemini-2.5-flash", 10**6, 10**6) == 2.8
    assert estimated_cost_usd("openai", "some-model", 1, 1) is None
    monkeypatch.setenv("MAGNET_PRICES_PER_MTOK", '{"some-model": [1.0, 2.0]}')
    assert estimated_cost_usd("openai", "some-model", 10**6, 10**6) == 3.0


class SlowFakeBackend(ScriptedFakeBackend):
    """A scripted fake that takes a while, so identical requests overlap in flight."""

    async def complete(self, request):
        await asyncio.sleep(0.05)
        return await super().complete(request)


def test_identical_requests_in_flight_together_pay_once(tmp_path):
    backend = SlowFakeBackend(lambda r: {"n": 1})
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j").open()
    same = LLMRequest(messages=[{"role": "user", "content": "hi"}])
    other = LLMRequest(messages=[{"role": "user", "content": "bye"}])
    replies = asyncio.run(client.gather([same, same, other, same]))
    client.close()
    assert len(backend.requests) == 2
    assert [r.cache_hit for r in replies] == [False, True, False, True]
    assert len({r.content for r in replies}) == 1 and client.stats.cache_hits == 2


def test_a_failed_request_in_flight_lets_the_waiting_twin_try_again(tmp_path):
    answers = [RuntimeError("boom"), {"n": 2}]

    class FailOnceBackend(SlowFakeBackend):
        async def complete(self, request):
            await asyncio.sleep(0.05)
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                self.requests.append(request)
                raise answer
            return await ScriptedFakeBackend.complete(self, request)

    backend = FailOnceBackend(lambda r: {"n": 2})
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "j").open()
    same = LLMRequest(messages=[{"role": "user", "content": "hi"}])
    first, second = asyncio.run(client.gather([same, same]))
    client.close()
    assert not first.ok and second.ok and not second.cache_hit
    assert len(backend.requests) == 2
