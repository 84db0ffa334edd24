"""Vertex batch prediction: the request file written and the output read back into the cache."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from magnet_dagster.llm.client import LLMClient, LLMRequest, RawReply, cache_key
from magnet_dagster.llm.gemini_backend import to_vertex_request
from magnet_dagster.llm.vertex_batch import (
    KEY_LABELS,
    cache_rows,
    read_batch_errors,
    read_batch_results,
    write_batch_requests,
)
from magnet_dagster.store.lineage import LineageStore
from tests.fakes import ScriptedFakeBackend

MODEL = "gemini-2.5-flash"
TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add.",
                                           "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}]
ASK = LLMRequest([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
                 max_tokens=64)
CALL = LLMRequest([{"role": "user", "content": "Add 2."}], tools=TOOLS, seed=3)
JSON = LLMRequest([{"role": "user", "content": "Rate it."}], response_schema={"type": "object"}, temperature=0.7)
BAD = LLMRequest([{"role": "user", "content": "Something unsafe."}])
FAILED = LLMRequest([{"role": "user", "content": "Too long."}])


def output_line(written: dict[str, Any], **outcome: Any) -> str:
    """An output line as Vertex writes it: the echoed request plus `status` and `response`."""
    return json.dumps({"status": "", "processed_time": "2025-06-01T12:00:00.000+00:00", **written, **outcome})


@pytest.fixture
def written(tmp_path) -> tuple[list[str], list[dict[str, Any]]]:
    keys = write_batch_requests([ASK, CALL, JSON, BAD, FAILED], MODEL, tmp_path / "in" / "requests.jsonl")
    lines = [json.loads(t) for t in (tmp_path / "in" / "requests.jsonl").read_text().splitlines()]
    return keys, lines


def test_each_line_is_the_rest_request_with_the_cache_key_in_its_labels(written):
    keys, lines = written
    assert keys == [cache_key("gemini", MODEL, r) for r in (ASK, CALL, JSON, BAD, FAILED)]
    assert all(set(line) == {"request"} for line in lines)
    for key, request, line in zip(keys, (ASK, CALL, JSON, BAD, FAILED), lines):
        labels = line["request"].pop("labels")
        assert set(labels) == set(KEY_LABELS) and "".join(labels[k] for k in KEY_LABELS) == key
        assert all(len(v) <= 63 and v == v.lower() for v in labels.values())
        assert line["request"] == to_vertex_request(request)


def test_written_requests_use_the_rest_field_names(written):
    _, (ask, call, as_json, *_) = written
    assert ask["request"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert ask["request"]["contents"] == [{"role": "user", "parts": [{"text": "Capital of France?"}]}]
    assert ask["request"]["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 64, "seed": 0}
    (decl,) = call["request"]["tools"][0]["functionDeclarations"]
    assert decl == {"name": "add", "description": "Add.", "parametersJsonSchema": TOOLS[0]["function"]["parameters"]}
    assert as_json["request"]["generationConfig"]["responseMimeType"] == "application/json"
    assert as_json["request"]["generationConfig"]["responseJsonSchema"] == {"type": "object"}


def test_a_repeated_request_is_written_once_but_keyed_every_time(tmp_path):
    keys = write_batch_requests([ASK, CALL, ASK], MODEL, tmp_path / "r.jsonl")
    assert keys[0] == keys[2] != keys[1]
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2


@pytest.fixture
def output(tmp_path, written) -> Any:
    keys, (ask, call, as_json, bad, failed) = written
    folder = tmp_path / "out" / "prediction-model-2025-06-01T12:00:00"
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("\n".join([
        output_line(ask, response={
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Paris."}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
            "modelVersion": "gemini-2.5-flash", "someFieldAddedLater": {"x": 1}}),
        output_line(call, response={
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "add", "args": {"a": 2}}, "thoughtSignature": "c2lnbmF0dXJl"}]},
                "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "thoughtsTokenCount": 8}}),
        output_line(as_json, response={
            "candidates": [{"content": {"role": "model", "parts": [{"text": '{"score": 4}'}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 4}}),
        output_line(bad, response={"promptFeedback": {"blockReason": "SAFETY"},
                                   "usageMetadata": {"promptTokenCount": 5}}),
        output_line(failed, status='Bad Request: {"error": {"code": 400, "message": "Request contains an '
                                   'invalid argument.", "status": "INVALID_ARGUMENT"}}'),
        "",
    ]))
    return keys, tmp_path / "out"


def test_answered_lines_become_replies_under_their_cache_keys(output):
    (ask, call, as_json, bad, failed), folder = output
    results = read_batch_results(folder)
    assert set(results) == {ask, call, as_json}
    assert results[ask] == RawReply({"role": "assistant", "content": "Paris."}, 9, 2)
    (tool_call,) = results[call].message["tool_calls"]
    assert tool_call["function"] == {"name": "add", "arguments": '{"a": 2}'}
    assert results[call].message["content"] is None and results[call].output_tokens == 13
    assert json.loads(results[as_json].message["content"]) == {"score": 4}


def test_error_and_blocked_lines_are_reported_not_returned(output):
    (ask, call, as_json, bad, failed), folder = output
    errors = read_batch_errors(folder)
    assert set(errors) == {bad, failed}
    assert errors[bad].startswith("GeminiBlocked") and "SAFETY" in errors[bad]
    assert errors[failed].startswith("batch error") and "INVALID_ARGUMENT" in errors[failed]


def test_a_line_without_a_key_is_an_error(tmp_path):
    path = tmp_path / "foreign.jsonl"
    path.write_text(output_line({"request": {"contents": []}}, response={}) + "\n")
    with pytest.raises(ValueError, match="foreign.jsonl:1"):
        read_batch_results(path)


def test_results_land_in_the_cache_the_online_client_reads(output, tmp_path):
    (ask, call, as_json, bad, failed), folder = output
    store = LineageStore(tmp_path / "l.duckdb")
    store.append("llm_cache", cache_rows(read_batch_results(folder), MODEL))
    online = ScriptedFakeBackend(lambda r: "online answer", name="gemini", model=MODEL)
    client = LLMClient(online, store, tmp_path / "journal").open()

    async def main() -> list[Any]:
        try:
            return await client.gather([ASK, CALL, BAD])
        finally:
            await client.aclose()

    from_batch, called, retried = asyncio.run(main())
    assert from_batch.cache_hit and from_batch.content == "Paris."
    assert called.cache_hit and [c.name for c in called.tool_calls()] == ["add"]
    assert not retried.cache_hit and retried.content == "online answer"
    assert online.requests == [BAD]
