"""Retries with backoff on 429, 5xx and time-outs, against a loopback server that fails on purpose."""

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.store.lineage import LineageStore

OK = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
      "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fine"}}],
      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class FailingServer:
    """Answers each POST with the next scripted failure (`429`, `500`, `503`, `hang`), then success."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.seen = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.seen += 1
                step = outer.script.pop(0) if outer.script else "ok"
                if step == "hang":
                    time.sleep(1.5)
                    return
                status, body = (200, OK) if step == "ok" else (int(step), {"error": {"message": step}})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FailingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


def _backend(url: str, attempts: int = 5) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(url, "m", timeout_s=0.5, max_attempts=attempts, max_backoff_s=0.05)


@pytest.mark.parametrize("failures", [["429"], ["500", "503"], ["hang"], ["429", "500", "hang"]])
def test_backend_retries_transient_failures_then_succeeds(failures):
    with FailingServer(failures) as server:
        reply = asyncio.run(_backend(server.url).complete(LLMRequest([{"role": "user", "content": "hi"}])))
    assert reply.message["content"] == "fine"
    assert server.seen == len(failures) + 1


def test_client_records_a_call_that_still_fails_and_goes_on(tmp_path):
    with FailingServer(["500"] * 10) as server:
        client = LLMClient(_backend(server.url, attempts=3), LineageStore(tmp_path / "l.duckdb"),
                           tmp_path / "journal").open()
        reply = asyncio.run(client.chat(LLMRequest([{"role": "user", "content": "hi"}])))
        client.close()
        assert server.seen == 3
    assert not reply.ok and "InternalServerError" in reply.error
    assert client.stats.as_dict()["errors"] == 1


def test_client_errors_are_not_retried_forever_on_400():
    with FailingServer(["400"]) as server:
        with pytest.raises(Exception, match="400"):
            asyncio.run(_backend(server.url).complete(LLMRequest([{"role": "user", "content": "hi"}])))
        assert server.seen == 1
