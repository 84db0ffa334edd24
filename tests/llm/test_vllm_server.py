"""Starting the vLLM student: command line, readiness wait, stop (a fake `vllm` executable, named as such)."""

import asyncio
import json
import stat
import sys
import textwrap

import pytest

from magnet_dagster.llm.backends import BackendSettings, make_backend
from magnet_dagster.llm.client import LLMRequest
from magnet_dagster.llm.vllm_server import start_vllm

FAKE_VLLM = textwrap.dedent('''\
    #!{python}
    """A fake `vllm` CLI: records its argv, serves /v1/models and a native tool call."""
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    args = sys.argv[1:]
    open({argv_file!r}, "w").write(json.dumps(args))
    port = int(args[args.index("--port") + 1])
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
        def do_GET(self):
            self._send({{"object": "list", "data": [{{"id": args[1], "object": "model"}}]}})
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            call = {{"id": "c1", "type": "function", "function": {{"name": request["tools"][0]["function"]["name"],
                                                                   "arguments": "{{}}"}}}}
            self._send({{"id": "x", "object": "chat.completion", "created": 0, "model": args[1],
                        "choices": [{{"index": 0, "finish_reason": "tool_calls",
                                     "message": {{"role": "assistant", "content": None, "tool_calls": [call]}}}}],
                        "usage": {{"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}}})
    HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    argv_file = tmp_path / "argv.json"
    exe = tmp_path / "vllm"
    exe.write_text(FAKE_VLLM.format(python=sys.executable, argv_file=str(argv_file)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("MAGNET_VLLM_COMMAND", str(exe))
    return argv_file


def test_vllm_is_started_with_tool_calling_flags_and_stopped(fake_vllm, monkeypatch):
    monkeypatch.setenv("MAGNET_VLLM_ARGS", "--max-model-len 4096")
    server = start_vllm("org/student-7b", startup_timeout_s=30)
    try:
        argv = json.loads(fake_vllm.read_text())
        assert argv[:2] == ["serve", "org/student-7b"]
        assert "--enable-auto-tool-choice" in argv and argv[argv.index("--tool-call-parser") + 1] == "hermes"
        assert argv[-2:] == ["--max-model-len", "4096"]
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        monkeypatch.setenv("MAGNET_STUDENT", "vllm")
        monkeypatch.setenv("MAGNET_STUDENT_MODEL", "org/student-7b")
        backend = make_backend(BackendSettings.from_env("student"), server.base_url, None)
        tools = [{"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}]
        reply = asyncio.run(backend.complete(LLMRequest([{"role": "user", "content": "ping"}], tools=tools)))
        assert reply.message["tool_calls"][0]["function"]["name"] == "ping"
    finally:
        process = server.process
        server.stop()
    assert process.poll() is not None


def test_missing_vllm_executable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MAGNET_VLLM_COMMAND", "definitely-not-vllm")
    with pytest.raises(FileNotFoundError, match=r"pip install \.\[vllm\]"):
        start_vllm("m")
