"""The Gemini backend against a loopback server speaking Vertex `generateContent`.

What is asserted is what goes on the wire: the REST body batch files carry too (camelCase
fields), at the path google-genai would call. The declaration checks also accept the Python
field names (`parameters_json_schema`) google-genai's own client sends, as Vertex's JSON parser
takes either spelling.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from google.genai import errors
from google.oauth2.credentials import Credentials

from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.llm.gemini_backend import (
    GeminiBackend,
    GeminiBlocked,
    from_gemini_response,
    model_path,
    to_gemini_contents,
    to_vertex_request,
    vertex_base_url,
)
from magnet_dagster.store.lineage import LineageStore

VERTEX_PATH = "projects/test-proj/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a"]}
TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add two numbers.", "parameters": SCHEMA}}]
HISTORY = [
    {"role": "system", "content": "Be helpful."},
    {"role": "user", "content": "2+3?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
    {"role": "tool", "tool_call_id": "c0", "name": "add", "content": '{"result": 5}'},
]
REPLY_SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}}


def text_reply(text: str, **usage: int) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 3, **usage},
        "modelVersion": "gemini-2.5-flash",
    }


class Vertex:
    """Records every request and answers from a queue of canned (status, JSON) replies."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.replies: list[tuple[int, dict[str, Any]]] = []
        vertex = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                vertex.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)})
                status, payload = vertex.replies.pop(0) if vertex.replies else (500, {"error": {"code": 500}})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def reply(self, payload: dict[str, Any], status: int = 200) -> None:
        self.replies.append((status, payload))

    def backend(self, **kw: Any) -> GeminiBackend:
        kw.setdefault("credentials", Credentials(token="fake-token"))
        return GeminiBackend(
            model="gemini-2.5-flash", project="test-proj", location="us-central1",
            base_url=f"http://127.0.0.1:{self.port}/", retry_initial_delay_s=0.01, **kw,
        )


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No API key, project or proxy from the developer's shell may steer the SDK elsewhere."""
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE",
                 "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def vertex() -> Iterator[Vertex]:
    server = Vertex()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def complete(backend: GeminiBackend, request: LLMRequest) -> Any:
    async def main() -> Any:
        try:
            return await backend.complete(request)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def declared(decl: dict[str, Any]) -> Any:
    return decl.get("parametersJsonSchema", decl.get("parameters_json_schema"))


def test_request_goes_to_the_vertex_model_path_with_the_token(vertex):
    vertex.reply(text_reply("5"))
    complete(vertex.backend(), LLMRequest([{"role": "user", "content": "hi"}]))
    (sent,) = vertex.requests
    assert sent["path"].startswith("/v1") and sent["path"].endswith("/" + VERTEX_PATH)
    assert sent["headers"]["Authorization"] == "Bearer fake-token"


def test_request_body_carries_history_tools_and_generation_config(vertex):
    vertex.reply(text_reply('{"answer": 5}'))
    complete(vertex.backend(), LLMRequest(HISTORY, tools=TOOLS, response_schema=REPLY_SCHEMA,
                                          temperature=0.3, max_tokens=77, seed=9))
    body = vertex.requests[0]["body"]
    assert set(body) == {"contents", "systemInstruction", "tools", "generationConfig"}
    assert body["systemInstruction"]["parts"] == [{"text": "Be helpful."}]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][0]["parts"] == [{"text": "2+3?"}]
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "add", "args": {"a": 2, "b": 3}}}]
    assert body["contents"][2]["parts"] == [{"functionResponse": {"name": "add", "response": {"result": 5}}}]
    (decl,) = body["tools"][0]["functionDeclarations"]
    assert decl["name"] == "add" and decl["description"] == "Add two numbers." and declared(decl) == SCHEMA
    assert body["generationConfig"] == {
        "temperature": 0.3, "maxOutputTokens": 77, "seed": 9,
        "responseMimeType": "application/json", "responseJsonSchema": REPLY_SCHEMA,
    }


def test_online_body_is_the_body_batch_files_carry(vertex):
    request = LLMRequest(HISTORY, tools=TOOLS, response_schema=REPLY_SCHEMA, temperature=0.3, max_tokens=77, seed=9)
    vertex.reply(text_reply('{"answer": 5}'))
    complete(vertex.backend(), request)
    body = vertex.requests[0]["body"]
    for decl in body["tools"][0]["functionDeclarations"]:
        decl["parametersJsonSchema"] = decl.pop("parameters_json_schema", decl.get("parametersJsonSchema"))
    assert body == to_vertex_request(request)


def test_plain_request_sends_neither_tools_nor_json_mode(vertex):
    vertex.reply(text_reply("hello"))
    complete(vertex.backend(), LLMRequest([{"role": "user", "content": "hi"}], max_tokens=16))
    body = vertex.requests[0]["body"]
    assert set(body) == {"contents", "generationConfig"}
    assert body["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 16, "seed": 0}


def test_parallel_tool_results_are_answered_in_one_turn():
    calls = [{"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
             for i, n in enumerate(["left", "right"])]
    system, contents = to_gemini_contents([
        {"role": "user", "content": "both"},
        {"role": "assistant", "content": "Calling.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c0", "content": "1"},
        {"role": "tool", "tool_call_id": "c1", "content": "not json"},
        {"role": "user", "content": "thanks"},
    ])
    assert system is None
    assert [c["role"] for c in contents] == ["user", "model", "user", "user"]
    assert contents[1]["parts"][0] == {"text": "Calling."} and len(contents[1]["parts"]) == 3
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "left", "response": {"result": 1}}},
        {"functionResponse": {"name": "right", "response": {"result": "not json"}}},
    ]


def test_text_reply_and_token_counts(vertex):
    reply = text_reply("Paris", thoughtsTokenCount=20)
    reply["candidates"][0]["content"]["parts"].insert(0, {"text": "let me think", "thought": True})
    vertex.reply(reply)
    raw = complete(vertex.backend(), LLMRequest([{"role": "user", "content": "Capital of France?"}]))
    assert raw.message == {"role": "assistant", "content": "Paris"}
    assert (raw.input_tokens, raw.output_tokens) == (11, 23)


def test_function_calls_become_openai_tool_calls(vertex):
    vertex.reply({
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "add", "args": {"a": 2, "b": 3}}},
            {"functionCall": {"name": "add", "args": {"a": 1, "b": {"nested": [1.5, None]}}}},
        ]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12},
    })
    raw = complete(vertex.backend(), LLMRequest(HISTORY[:2], tools=TOOLS))
    assert raw.message["content"] is None
    first, second = raw.message["tool_calls"]
    assert first["type"] == "function" and first["function"]["name"] == "add"
    assert isinstance(first["function"]["arguments"], str)
    assert json.loads(first["function"]["arguments"]) == {"a": 2, "b": 3}
    assert json.loads(second["function"]["arguments"]) == {"a": 1, "b": {"nested": [1.5, None]}}
    assert first["id"] != second["id"]
    assert (raw.input_tokens, raw.output_tokens) == (40, 12)


def test_prompt_blocked_by_safety_raises(vertex):
    vertex.reply({"promptFeedback": {"blockReason": "SAFETY", "blockReasonMessage": "unsafe prompt"},
                  "usageMetadata": {"promptTokenCount": 7}})
    with pytest.raises(GeminiBlocked, match="SAFETY"):
        complete(vertex.backend(), LLMRequest([{"role": "user", "content": "something bad"}]))


def test_empty_candidate_raises(vertex):
    vertex.reply({"candidates": [{"finishReason": "SAFETY", "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}]})
    with pytest.raises(GeminiBlocked, match="empty candidate.*SAFETY"):
        complete(vertex.backend(), LLMRequest([{"role": "user", "content": "something bad"}]))


def test_partial_text_cut_by_a_safety_stop_is_not_used():
    reply = text_reply("Here is how to")
    reply["candidates"][0]["finishReason"] = "SAFETY"
    with pytest.raises(GeminiBlocked, match="unusable candidate"):
        from_gemini_response(reply)


def test_rate_limit_is_retried(vertex):
    vertex.reply({"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}}, 429)
    vertex.reply(text_reply("ok"))
    raw = complete(vertex.backend(), LLMRequest([{"role": "user", "content": "hi"}]))
    assert raw.message["content"] == "ok" and len(vertex.requests) == 2


def test_bad_request_is_raised_without_retry(vertex):
    vertex.reply({"error": {"code": 400, "message": "Invalid JSON payload.", "status": "INVALID_ARGUMENT"}}, 400)
    with pytest.raises(errors.ClientError, match="Invalid JSON payload"):
        complete(vertex.backend(), LLMRequest([{"role": "user", "content": "hi"}]))
    assert len(vertex.requests) == 1


def test_backend_serves_a_second_event_loop_after_aclose(vertex):
    backend = vertex.backend()
    vertex.reply(text_reply("one"))
    vertex.reply(text_reply("two"))
    first = complete(backend, LLMRequest([{"role": "user", "content": "1"}]))
    second = complete(backend, LLMRequest([{"role": "user", "content": "2"}]))
    assert (first.message["content"], second.message["content"]) == ("one", "two")


def test_llm_client_records_a_block_as_an_error_and_caches_only_answers(vertex, tmp_path):
    vertex.reply({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    vertex.reply(text_reply("fine"))
    client = LLMClient(vertex.backend(), LineageStore(tmp_path / "l.duckdb"), tmp_path / "journal").open()

    async def main() -> list[Any]:
        try:
            return [await client.chat(LLMRequest([{"role": "user", "content": q}])) for q in ("bad", "good")]
        finally:
            await client.aclose()

    blocked, answered = asyncio.run(main())
    assert not blocked.ok and "GeminiBlocked" in blocked.error and "PROHIBITED_CONTENT" in blocked.error
    assert answered.ok and answered.content == "fine"
    rows = LineageStore(tmp_path / "l.duckdb").query("SELECT backend, model, response FROM llm_cache")
    assert [(r["backend"], r["model"], r["response"]["message"]["content"]) for r in rows] == [
        ("gemini", "gemini-2.5-flash", "fine")]


def test_from_env_reads_project_location_and_base_url(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    monkeypatch.setenv("MAGNET_TEACHER_BASE_URL", "http://127.0.0.1:1/")
    backend = GeminiBackend.from_env(model="gemini-2.5-pro")
    assert (backend.model, backend.project, backend.location, backend.base_url) == (
        "gemini-2.5-pro", "p", "europe-west4", "http://127.0.0.1:1/")
    assert GeminiBackend.from_env().model == "gemini-2.5-flash"


def test_model_paths_and_endpoints_are_the_ones_google_genai_uses():
    assert model_path("gemini-2.5-flash") == "publishers/google/models/gemini-2.5-flash"
    assert model_path("meta/llama-3") == "publishers/meta/models/llama-3"
    assert model_path("projects/p/locations/l/endpoints/1") == "projects/p/locations/l/endpoints/1"
    assert vertex_base_url("europe-west4") == "https://europe-west4-aiplatform.googleapis.com/"
    assert vertex_base_url("global") == "https://aiplatform.googleapis.com/"
    assert vertex_base_url("eu") == "https://aiplatform.eu.rep.googleapis.com/"


def test_server_errors_are_retried_and_the_quota_project_is_sent(vertex):
    vertex.reply({"error": {"code": 503, "message": "Unavailable.", "status": "UNAVAILABLE"}}, 503)
    vertex.reply(text_reply("ok"))
    backend = vertex.backend(credentials=Credentials(token="fake-token", quota_project_id="billing-proj"))
    raw = complete(backend, LLMRequest([{"role": "user", "content": "hi"}]))
    assert raw.message["content"] == "ok" and len(vertex.requests) == 2
    assert vertex.requests[1]["headers"]["x-goog-user-project"] == "billing-proj"


class ExpiredCredentials(Credentials):
    """Credentials whose token has expired: refreshed (counted) before the first call."""

    def __init__(self) -> None:
        super().__init__(token=None)
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = f"refreshed-{self.refreshes}"


def test_an_expired_token_is_refreshed_once_for_calls_in_flight_together(vertex):
    credentials = ExpiredCredentials()
    for _ in range(5):
        vertex.reply(text_reply("ok"))
    backend = vertex.backend(credentials=credentials)

    async def main() -> list[Any]:
        try:
            return list(await asyncio.gather(*(backend.complete(LLMRequest([{"role": "user", "content": str(i)}]))
                                               for i in range(5))))
        finally:
            await backend.aclose()

    replies = asyncio.run(main())
    assert len(replies) == 5 and credentials.refreshes == 1
    assert {r["headers"]["Authorization"] for r in vertex.requests} == {"Bearer refreshed-1"}


def test_project_and_credentials_come_from_application_default_credentials(vertex, monkeypatch):
    import google.auth

    monkeypatch.setattr(google.auth, "default", lambda scopes=None: (Credentials(token="adc-token"), "test-proj"))
    vertex.reply(text_reply("ok"))
    backend = GeminiBackend(model="gemini-2.5-flash", location="us-central1", base_url=f"http://127.0.0.1:{vertex.port}/")
    complete(backend, LLMRequest([{"role": "user", "content": "hi"}]))
    (sent,) = vertex.requests
    assert sent["path"].endswith("/" + VERTEX_PATH) and sent["headers"]["Authorization"] == "Bearer adc-token"
