"""Batch mode: uncached requests go to one batch job, its answers land in the cache the online client reads.

The job itself is a scripted fake (`FakeBatchRunner`): it reads the request file the code
wrote, checks each line is a Vertex request carrying its cache key, and writes an output
folder in Vertex's layout. Uploading, polling and downloading are Google's and not run here.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from magnet_dagster.llm.backends import BackendSettings, make_batch_runner
from magnet_dagster.llm.batch_mode import BatchOutcome, prefetch_with_batch
from magnet_dagster.llm.client import LLMClient, LLMRequest, LLMReply, cache_key
from magnet_dagster.llm.gemini_backend import to_vertex_request
from magnet_dagster.llm.vertex_batch import KEY_LABELS, VertexBatchRunner, split_gs_uri
from magnet_dagster.store.lineage import LineageStore
from tests.fakes import ScriptedFakeBackend

MODEL = "gemini-2.5-flash"
CACHED = LLMRequest([{"role": "user", "content": "Already asked online."}])
FIRST = LLMRequest([{"role": "user", "content": "Judge f -> g."}], response_schema={"type": "object"})
SECOND = LLMRequest([{"role": "user", "content": "Judge g -> h."}], response_schema={"type": "object"})
FAILING = LLMRequest([{"role": "user", "content": "Judge h -> f (fail this one)."}])


def key(request: LLMRequest) -> str:
    return cache_key("gemini", MODEL, request)


@dataclass
class FakeBatchRunner:
    """Answers each line with `batch:<its user text>`, except lines mentioning `fail`, which get a status."""

    jobs: list[list[str]] = field(default_factory=list)

    def run(self, requests_file: Path, model: str, output_dir: Path) -> Path:
        assert model == MODEL
        lines = [json.loads(t) for t in requests_file.read_text(encoding="utf-8").splitlines()]
        keys = []
        folder = output_dir / "prediction-model-2025-06-01T12:00:00"
        folder.mkdir(parents=True)
        with (folder / "predictions.jsonl").open("w", encoding="utf-8") as out:
            for line in lines:
                assert set(line) == {"request"}
                request = line["request"]
                assert set(request["labels"]) == set(KEY_LABELS)
                keys.append("".join(request["labels"][k] for k in KEY_LABELS))
                text = request["contents"][-1]["parts"][0]["text"]
                out.write(json.dumps({"status": "", "processed_time": "2025-06-01T12:00:00Z", **line,
                                      **self.outcome(text)}) + "\n")
        self.jobs.append(keys)
        return output_dir

    @staticmethod
    def outcome(text: str) -> dict[str, Any]:
        if "fail" in text:
            return {"status": 'Bad Request: {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}'}
        return {"response": {
            "candidates": [{"content": {"role": "model", "parts": [{"text": f"batch:{text}"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3}}}


@pytest.fixture
def store(tmp_path) -> LineageStore:
    return LineageStore(tmp_path / "l.duckdb")


@pytest.fixture
def online() -> ScriptedFakeBackend:
    return ScriptedFakeBackend(lambda r: "online answer", name="gemini", model=MODEL)


def client_for(backend: ScriptedFakeBackend, store: LineageStore, tmp_path: Path) -> LLMClient:
    return LLMClient(backend, store, tmp_path / "journal")


def ask(client: LLMClient, requests: list[LLMRequest]) -> list[LLMReply]:
    async def main() -> list[LLMReply]:
        try:
            return await client.gather(requests)
        finally:
            await client.aclose()
    return asyncio.run(main())


@pytest.fixture
def cached_online(store, online, tmp_path) -> None:
    """`CACHED` was answered by an earlier online run."""
    ask(client_for(online, store, tmp_path).open(), [CACHED])
    online.requests.clear()


def test_only_uncached_requests_are_written_and_each_once(store, online, cached_online, tmp_path):
    runner = FakeBatchRunner()
    client = client_for(online, store, tmp_path).open()
    outcome = asyncio.run(prefetch_with_batch(client, [FIRST, SECOND, FIRST, FAILING, CACHED], runner,
                                              tmp_path / "batch"))
    client.close()
    assert runner.jobs == [[key(FIRST), key(SECOND), key(FAILING)]]
    written = [json.loads(t) for t in (tmp_path / "batch" / "requests.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in line["request"].items() if k != "labels"} for line in written] == [
        to_vertex_request(r) for r in (FIRST, SECOND, FAILING)]
    assert outcome == BatchOutcome(requested=4, already_cached=1, answered=2, failed=1,
                                   errors={key(FAILING): outcome.errors[key(FAILING)]})
    assert "INVALID_ARGUMENT" in outcome.errors[key(FAILING)] and outcome.submitted == 3
    assert outcome.as_metadata() == {"batch_requested": 4, "batch_already_cached": 1, "batch_submitted": 3,
                                     "batch_answered": 2, "batch_failed": 1}


def test_the_open_client_then_pays_online_only_for_the_failed_line(store, online, cached_online, tmp_path):
    client = client_for(online, store, tmp_path).open()
    asyncio.run(prefetch_with_batch(client, [FIRST, SECOND, FAILING, CACHED], FakeBatchRunner()))
    first, second, failing, cached = ask(client, [FIRST, SECOND, FAILING, CACHED])
    assert [r.cache_hit for r in (first, second, failing, cached)] == [True, True, False, True]
    assert first.content == "batch:Judge f -> g." and second.content == "batch:Judge g -> h."
    assert failing.ok and failing.content == "online answer"
    assert online.requests == [FAILING]
    assert client.stats.cache_hits == 3 and client.stats.input_tokens == 10


def test_answers_are_stored_for_clients_opened_later(store, online, tmp_path):
    asyncio.run(prefetch_with_batch(client_for(online, store, tmp_path), [FIRST, FAILING], FakeBatchRunner()))
    rows = store.query("SELECT cache_key, backend, model, response FROM llm_cache")
    assert [(r["cache_key"], r["backend"], r["model"]) for r in rows] == [(key(FIRST), "gemini", MODEL)]
    assert rows[0]["response"]["message"]["content"] == "batch:Judge f -> g."
    (reply,) = ask(client_for(online, store, tmp_path).open(), [FIRST])
    assert reply.cache_hit and reply.content == "batch:Judge f -> g." and online.requests == []


def test_a_second_prefetch_submits_only_what_is_still_missing(store, online, tmp_path):
    runner = FakeBatchRunner()
    client = client_for(online, store, tmp_path)
    first = asyncio.run(prefetch_with_batch(client, [FIRST, FAILING], runner))
    again = asyncio.run(prefetch_with_batch(client, [FIRST, FAILING], runner))
    assert runner.jobs == [[key(FIRST), key(FAILING)], [key(FAILING)]]
    assert (first.answered, again.already_cached, again.answered, again.failed) == (1, 1, 0, 1)


def test_nothing_uncached_means_no_job(store, online, cached_online, tmp_path):
    runner = FakeBatchRunner()
    outcome = asyncio.run(prefetch_with_batch(client_for(online, store, tmp_path), [CACHED, CACHED], runner))
    assert runner.jobs == [] and outcome == BatchOutcome(requested=1, already_cached=1, answered=0, failed=0)


def test_a_missing_output_line_counts_as_failed(store, online, tmp_path):
    class DropsEverything(FakeBatchRunner):
        def run(self, requests_file: Path, model: str, output_dir: Path) -> Path:
            output_dir.mkdir(parents=True)
            return output_dir

    outcome = asyncio.run(prefetch_with_batch(client_for(online, store, tmp_path), [FIRST], DropsEverything()))
    assert (outcome.answered, outcome.failed) == (0, 1) and "no output line" in outcome.errors[key(FIRST)]


def test_batch_mode_needs_the_gemini_backend(store, tmp_path):
    local = ScriptedFakeBackend(lambda r: "x", name="local", model="m")
    with pytest.raises(ValueError, match="gemini"):
        asyncio.run(prefetch_with_batch(client_for(local, store, tmp_path), [FIRST], FakeBatchRunner()))


@pytest.fixture
def teacher_env(monkeypatch) -> pytest.MonkeyPatch:
    for name in ("MAGNET_TEACHER", "MAGNET_TEACHER_BATCH", "MAGNET_VERTEX_BATCH_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_batch_mode_is_off_unless_asked_for(teacher_env):
    teacher_env.setenv("MAGNET_TEACHER", "gemini")
    assert BackendSettings.from_env("teacher").batch is None
    assert make_batch_runner(BackendSettings.from_env("teacher")) is None


def test_vertex_batch_mode_from_the_environment(teacher_env):
    teacher_env.setenv("MAGNET_TEACHER", "gemini")
    teacher_env.setenv("MAGNET_TEACHER_BATCH", "vertex")
    settings = BackendSettings.from_env("teacher")
    assert settings.batch == "vertex"
    with pytest.raises(ValueError, match="MAGNET_VERTEX_BATCH_BUCKET"):
        make_batch_runner(settings)
    teacher_env.setenv("MAGNET_VERTEX_BATCH_BUCKET", "gs://my-bucket/magnet")
    runner = make_batch_runner(settings)
    assert isinstance(runner, VertexBatchRunner) and runner.bucket == "gs://my-bucket/magnet"


@pytest.mark.parametrize("env, match", [({"MAGNET_TEACHER": "local", "MAGNET_TEACHER_BATCH": "vertex"}, "=gemini"),
                                        ({"MAGNET_TEACHER": "gemini", "MAGNET_TEACHER_BATCH": "openai"}, "choose")])
def test_a_batch_mode_the_backend_cannot_serve_is_an_error(teacher_env, env, match):
    for name, value in env.items():
        teacher_env.setenv(name, value)
    with pytest.raises(ValueError, match=match):
        BackendSettings.from_env("teacher")


def test_bucket_uris_split_into_bucket_and_prefix():
    assert split_gs_uri("gs://b/some/prefix/") == ("b", "some/prefix")
    assert split_gs_uri("b") == ("b", "")
    with pytest.raises(ValueError):
        split_gs_uri("gs://")
