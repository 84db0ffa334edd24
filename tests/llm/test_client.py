"""The LLM client: cache, per-call record, failure budget, and the crash-safe journal (scripted fake backend)."""

import asyncio
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magnet_dagster.llm.client import LLMClient, LLMRequest, RawReply, cache_key, request_hashes
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


# ------------------------------------------------------------------ the stored cache, looked up by key


class CountingStore(LineageStore):
    """A real store that counts the `llm_cache` reads it is asked for, and how many keys each carried."""

    def __init__(self, path):
        super().__init__(path)
        self.cache_reads: list[int] = []

    def query(self, sql, params=()):
        if "FROM llm_cache" in sql:
            self.cache_reads.append(len(set(params)) - 2)  # backend and model, then the (padded) keys
        return super().query(sql, params)


def _stored(tmp_path, n: int) -> list[LLMRequest]:
    """`n` requests answered by a first client, so a later one finds them in `llm_cache`."""
    requests = [LLMRequest(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(n)]
    first = _client(tmp_path, ScriptedFakeBackend(lambda r: r.messages[0]["content"].upper()))
    asyncio.run(first.gather(requests))
    first.close()
    return requests


def test_open_reads_nothing_of_the_cache_and_requests_asked_together_share_one_lookup(tmp_path):
    requests = _stored(tmp_path, 50)
    store = CountingStore(tmp_path / "l.duckdb")
    backend = ScriptedFakeBackend(lambda r: "unused")
    client = LLMClient(backend, store, tmp_path / "journal").open()
    assert store.cache_reads == []
    replies = asyncio.run(client.gather(requests))
    assert [r.content for r in replies] == [f"Q{i}" for i in range(50)] and all(r.cache_hit for r in replies)
    assert store.cache_reads == [50] and backend.requests == []
    # read once, then served from memory for the rest of the run
    assert asyncio.run(client.chat(requests[7])).content == "Q7" and store.cache_reads == [50]
    client.close()


def test_a_rerun_of_many_requests_makes_no_new_request(tmp_path):
    requests = _stored(tmp_path, 600)  # more than the first lookup carries: several queries
    store = CountingStore(tmp_path / "l.duckdb")
    backend = ScriptedFakeBackend(lambda r: "unused")
    client = LLMClient(backend, store, tmp_path / "journal", concurrency=64).open()
    replies = asyncio.run(client.gather(requests + requests[:10]))
    client.close()
    assert backend.requests == [] and all(r.cache_hit for r in replies) and client.stats.cache_hits == 610
    assert sum(store.cache_reads) >= 600 and len(store.cache_reads) <= 3


def test_cached_is_what_this_run_holds_and_remember_serves_batch_answers(tmp_path):
    stored = _stored(tmp_path, 1)[0]
    backend = ScriptedFakeBackend(lambda r: "fresh")
    client = _client(tmp_path, backend)
    key = cache_key("fake", "scripted-fake", stored)
    assert not client.cached(key)  # stored, but not read yet: batch_mode.stored_keys asks the store
    assert asyncio.run(client.chat(stored)).cache_hit and client.cached(key)
    batch = LLMRequest(messages=[{"role": "user", "content": "from a batch job"}])
    client.remember({cache_key("fake", "scripted-fake", batch): RawReply({"role": "assistant", "content": "B"})})
    reply = asyncio.run(client.chat(batch))
    client.close()
    assert reply.cache_hit and reply.content == "B" and backend.requests == []


def test_a_store_that_fails_the_lookup_fails_the_call_instead_of_paying_for_it(tmp_path):
    class BrokenStore(LineageStore):
        def query(self, sql, params=()):
            if "FROM llm_cache" in sql:  # reachable at open, gone by the first lookup
                raise RuntimeError("store gone")
            return super().query(sql, params)

    backend = ScriptedFakeBackend(lambda r: "x")
    client = LLMClient(backend, BrokenStore(tmp_path / "l.duckdb"), tmp_path / "journal").open()
    with pytest.raises(RuntimeError, match="store gone"):
        asyncio.run(client.gather([REQ, LLMRequest(messages=[{"role": "user", "content": "other"}])]))
    assert backend.requests == []


def _reference_key(backend: str, model: str, request: LLMRequest) -> str:
    """The cache key as every earlier version computed it: keys must never change (they address stored answers)."""
    payload = {"backend": backend, "model": model, **request.canonical()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4), max_size=3),
    tools=st.none() | st.lists(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3), max_size=2),
    schema=st.none() | st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
    temperature=st.floats(0, 2) | st.integers(0, 2) | st.sampled_from([float("inf"), True]),
    max_tokens=st.integers(1, 4096) | st.floats(1, 9), seed=st.integers(0, 2**31), model=st.text(max_size=10),
)
def test_cache_keys_are_the_ones_earlier_versions_computed(messages, tools, schema, temperature, max_tokens, seed,
                                                           model):
    request = LLMRequest(messages=messages, tools=tools, response_schema=schema, temperature=temperature,
                         max_tokens=max_tokens, seed=seed)
    key, prompt_hash = request_hashes("openai", model, request)
    assert key == cache_key("openai", model, request) == _reference_key("openai", model, request)
    assert prompt_hash == hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


def test_the_gc_freeze_lasts_while_a_client_is_open_and_nests(tmp_path, monkeypatch):
    import gc

    import magnet_dagster.llm.client as client_module

    freeze = client_module._GcFreeze()
    monkeypatch.setattr(client_module, "_GC_FREEZE", freeze)
    first = LLMClient(ScriptedFakeBackend(lambda r: "x"), LineageStore(tmp_path / "a.duckdb"), tmp_path / "ja").open()
    second = LLMClient(ScriptedFakeBackend(lambda r: "x"), LineageStore(tmp_path / "b.duckdb"), tmp_path / "jb").open()
    first.open()  # reopening holds no second time
    assert freeze.holders == 2 and gc.get_freeze_count() > 0
    first.close()
    assert freeze.holders == 1 and gc.get_freeze_count() > 0
    second.close()
    second.close()  # closing twice releases once
    assert freeze.holders == 0 and gc.get_freeze_count() == 0


@pytest.mark.integration
def test_lookups_and_replacements_run_on_the_postgres_store_too(tmp_path, postgres_url):
    """The client's own SQL (a keyed `IN` lookup, the replacement's `DELETE`) on the shared store."""
    from magnet_dagster.store.shared import PostgresLineageStore

    store = PostgresLineageStore(postgres_url)
    requests = [LLMRequest(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(300)]
    poisoned = LLMRequest(messages=[{"role": "user", "content": "poisoned"}])
    store.append("llm_cache", [{"cache_key": cache_key("fake", "scripted-fake", poisoned), "backend": "fake",
                                "model": "scripted-fake", "created_at": "2024-01-01T00:00:00",
                                "response": {"message": {"role": "assistant", "content": "[" * 100 + "]" * 100}}}])
    first_backend = ScriptedFakeBackend(lambda r: r.messages[0]["content"].upper())
    first = LLMClient(first_backend, store, tmp_path / "journal").open()
    replies = asyncio.run(first.gather(requests + [poisoned]))
    first.close()
    assert len(first_backend.requests) == 301 and replies[-1].content == "POISONED"  # the poisoned one replaced
    rerun_backend = ScriptedFakeBackend(lambda r: "unused")
    rerun = LLMClient(rerun_backend, PostgresLineageStore(postgres_url), tmp_path / "journal").open()
    again = asyncio.run(rerun.gather(requests + [poisoned]))
    rerun.close()
    assert rerun_backend.requests == [] and all(r.cache_hit for r in again) and again[-1].content == "POISONED"
