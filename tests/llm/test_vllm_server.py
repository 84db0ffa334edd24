"""Starting the vLLM student: refusals, command line, readiness wait, stop (a fake vLLM Python, named
as such), and, as an integration test, the real CPU build serving the converted packaged model.

The integration test needs `make vllm` (`.venv-vllm`); without it, it is skipped, except under
CI (`CI` set), where a missing vLLM is a failure.
"""

import asyncio
import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest

from magnet_dagster.llm import vllm_server
from magnet_dagster.llm.backends import BackendSettings, make_backend
from magnet_dagster.llm.client import LLMReply, LLMRequest
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.llm.server_process import ServerStartError
from magnet_dagster.llm.vllm_server import chat_template_for, start_vllm, vllm_command
from magnet_dagster.training.base_model import chat_template, chat_template_path

FAKE_VLLM_PYTHON = textwrap.dedent('''\
    #!{python}
    """A fake vLLM Python: records argv and env, serves /v1/models and a native tool call."""
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    args = sys.argv[1:]
    open({record!r}, "w").write(json.dumps({{"argv": args, "env": dict(os.environ)}}))
    name = args[args.index("--served-model-name") + 1]
    port = int(args[args.index("--port") + 1])
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
        def do_GET(self):
            self._send({{"object": "list", "data": [{{"id": name, "object": "model"}}]}})
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            call = {{"id": "c1", "type": "function", "function": {{"name": request["tools"][0]["function"]["name"],
                                                                   "arguments": "{{}}"}}}}
            self._send({{"id": "x", "object": "chat.completion", "created": 0, "model": name,
                        "choices": [{{"index": 0, "finish_reason": "tool_calls",
                                     "message": {{"role": "assistant", "content": None, "tool_calls": [call]}}}}],
                        "usage": {{"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}}})
    HTTPServer(("127.0.0.1", port), H).serve_forever()
''')

FAILING_VLLM_PYTHON = textwrap.dedent("""\
    #!/bin/sh
    echo "INFO loading the model"
    echo "ValueError: this checkpoint cannot be served" >&2
    exit 1
""")


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def checkpoint(tmp_path):
    """A directory that passes for a checkpoint (config.json and the template; nothing loads it)."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "chat_template.jinja").write_text(chat_template())
    return ckpt


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    record = tmp_path / "record.json"
    python = executable(tmp_path / "python", FAKE_VLLM_PYTHON.format(python=sys.executable, record=str(record)))
    monkeypatch.setenv("MAGNET_VLLM_PYTHON", str(python))
    monkeypatch.delenv("MAGNET_VLLM_ARGS", raising=False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    return record


def test_vllm_is_started_from_its_venv_with_tool_calling_flags_and_stopped(fake_vllm, checkpoint, monkeypatch):
    monkeypatch.setenv("MAGNET_VLLM_ARGS", "--max-model-len 4096")
    server = start_vllm(checkpoint, served_name="student", startup_timeout_s=30)
    try:
        recorded = json.loads(fake_vllm.read_text())
        argv, env = recorded["argv"], recorded["env"]
        assert argv[:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint.resolve())]
        assert argv[argv.index("--served-model-name") + 1] == "student"
        assert "--enable-auto-tool-choice" in argv and argv[argv.index("--tool-call-parser") + 1] == "hermes"
        assert argv[argv.index("--chat-template") + 1] == str(checkpoint.resolve() / "chat_template.jinja")
        assert argv[argv.index("--dtype") + 1] == "float32"
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[-2:] == ["--max-model-len", "4096"]
        assert env["VLLM_CPU_KVCACHE_SPACE"] == "4" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
        assert int(env["OMP_NUM_THREADS"]) >= 1
        monkeypatch.setenv("MAGNET_STUDENT", "vllm")
        monkeypatch.setenv("MAGNET_STUDENT_MODEL", "student")
        backend = make_backend(BackendSettings.from_env("student"), server.base_url, None)
        tools = [{"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}]
        reply = asyncio.run(backend.complete(LLMRequest([{"role": "user", "content": "ping"}], tools=tools)))
        assert reply.message["tool_calls"][0]["function"]["name"] == "ping"
    finally:
        process = server.process
        server.stop()
    assert process is not None and process.poll() is not None


def test_a_missing_checkpoint_is_refused_before_anything_starts(tmp_path, fake_vllm):
    missing = tmp_path / "checkpoints" / "nope"
    with pytest.raises(FileNotFoundError, match=r"nope does not exist.*magnet_dagster\.training\.base_model"):
        start_vllm(missing)
    with pytest.raises(FileNotFoundError, match="make train-demo"):
        start_vllm(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty has no config\.json"):
        start_vllm(tmp_path / "empty")
    assert not fake_vllm.exists()


def test_without_a_vllm_install_the_error_names_make_vllm(checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("MAGNET_VLLM_PYTHON", raising=False)
    monkeypatch.setattr(vllm_server, "VLLM_VENV", tmp_path / "no-venv")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make vllm"):
        start_vllm(checkpoint)
    monkeypatch.setenv("MAGNET_VLLM_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(FileNotFoundError, match=r"MAGNET_VLLM_PYTHON=.*make vllm"):
        start_vllm(checkpoint)


def test_a_server_that_exits_is_an_error_naming_and_quoting_its_log(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNET_VLLM_PYTHON", str(executable(tmp_path / "python", FAILING_VLLM_PYTHON)))
    log = tmp_path / "logs" / "vllm_student.log"
    with pytest.raises(RuntimeError, match="exited with code 1") as failure:
        start_vllm(checkpoint, log_path=log, startup_timeout_s=30)
    assert isinstance(failure.value, ServerStartError)
    assert str(log) in str(failure.value)
    assert "ValueError: this checkpoint cannot be served" in str(failure.value)


def test_a_server_that_never_answers_is_stopped_and_its_log_named(checkpoint, tmp_path, monkeypatch):
    silent = executable(tmp_path / "python", "#!/bin/sh\necho still compiling\nexec sleep 60\n")
    monkeypatch.setenv("MAGNET_VLLM_PYTHON", str(silent))
    log = tmp_path / "vllm.log"
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"did not answer within 1 s \(log: .*vllm\.log\)") as failure:
        start_vllm(checkpoint, log_path=log, startup_timeout_s=1)
    assert "still compiling" in str(failure.value)
    assert time.monotonic() - started < 20


def test_the_chat_template_served_is_the_checkpoints_own_else_the_projects(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    assert chat_template_for(ckpt) == chat_template_path()
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert chat_template_for(ckpt) is None  # vLLM uses the tokenizer's own
    (ckpt / "chat_template.jinja").write_text("{{ messages }}")
    assert chat_template_for(ckpt) == ckpt / "chat_template.jinja"
    assert chat_template_for(None) is None


def test_a_hub_model_and_the_vllm_command_on_path():
    command = vllm_command(["/usr/bin/vllm", "serve"], "Qwen/Qwen2.5-7B-Instruct", "student", 8000)
    assert command[:3] == ["/usr/bin/vllm", "serve", "Qwen/Qwen2.5-7B-Instruct"]
    assert vllm_server.resolve_model("Qwen/Qwen2.5-7B-Instruct") == ("Qwen/Qwen2.5-7B-Instruct", None)


# --- the real server ------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "the city"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        # OpenAI's `strict`: vLLM then holds the arguments to the schema, not only the call's envelope
        "strict": True,
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def vllm_installed() -> bool:
    return bool(os.environ.get("MAGNET_VLLM_PYTHON")) or (vllm_server.VLLM_VENV / "bin" / "python").is_file()


@pytest.fixture(scope="module")
def served_base(tmp_path_factory):
    """The packaged GGUF converted once, served by vLLM's CPU build for the module's tests.

    Served eagerly (`--enforce-eager` through MAGNET_VLLM_ARGS): start-up about 45 s instead of
    2-3 minutes of compiling, for a few short requests; the default (compiled) start is what
    the pipeline's own runs use.
    """
    if not vllm_installed():
        if os.environ.get("CI", "") not in ("", "0", "false"):
            pytest.fail(f"vLLM is not installed in {vllm_server.VLLM_VENV}: CI must run `make vllm` first")
        pytest.skip(f"vLLM is not installed ({vllm_server.VLLM_VENV} missing): `make vllm` builds it")
    from magnet_dagster.training.base_model import convert_gguf

    work = tmp_path_factory.mktemp("vllm")
    started = time.monotonic()
    ckpt = convert_gguf(work / "base")
    converted = time.monotonic() - started
    log = work / "vllm.log"
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MAGNET_VLLM_ARGS", "--enforce-eager")
        server = start_vllm(ckpt, log_path=log, served_name="base", startup_timeout_s=1200)
    print(f"\nconversion {converted:.0f} s, vLLM start-up {time.monotonic() - started:.0f} s (log: {log})")
    try:
        yield ckpt, server
    finally:
        server.stop()


class ToolChoiceBackend(OpenAICompatibleBackend):
    """The project's vLLM backend with OpenAI's `tool_choice` added to the request (LLMRequest has none)."""

    tool_choice: object = None

    def request_kwargs(self, request: LLMRequest) -> dict:
        kwargs = super().request_kwargs(request)
        if self.tool_choice is not None:
            kwargs["tool_choice"] = self.tool_choice
        return kwargs


def ask(server, request: LLMRequest, tool_choice: object = None) -> tuple[LLMReply, float]:
    backend = ToolChoiceBackend(base_url=server.base_url, model="base", name="vllm", max_attempts=1)
    backend.tool_choice = tool_choice

    async def go():
        try:
            return await backend.complete(request)
        finally:
            await backend.aclose()

    started = time.monotonic()
    raw = asyncio.run(go())
    return LLMReply(raw.message, call_id="t", cache_hit=False, outcome="ok"), time.monotonic() - started


@pytest.mark.integration
def test_the_converted_checkpoint_is_a_plain_fp32_checkpoint_with_the_projects_template(served_base):
    ckpt, _ = served_base
    config = json.loads((ckpt / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert (ckpt / "chat_template.jinja").read_text() == chat_template()
    assert (ckpt / "model.safetensors").stat().st_size > 400e6


@pytest.mark.integration
@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_tool_call_parses_through_the_projects_client(served_base, tool_choice):
    """With a forced tool choice and strict tools vLLM constrains decoding to the tools' schemas, so even
    the untrained 135M model returns a call; it comes back through the hermes parser and the project's."""
    _, server = served_base
    request = LLMRequest(
        [{"role": "user", "content": "What is the weather in Paris, in celsius?"}],
        tools=[WEATHER, TIME] if tool_choice == "required" else [TIME, WEATHER],
        max_tokens=128,
    )
    reply, seconds = ask(server, request, tool_choice)
    print(f"\ntool_choice={tool_choice}: {seconds:.1f} s, {reply.message}")
    calls = reply.tool_calls()
    assert calls, reply.message
    call = calls[0]
    spec = {"get_weather": WEATHER, "get_time": TIME}[call.name]
    if tool_choice != "required":
        assert call.name == "get_weather"
    jsonschema.validate(call.arguments, spec["function"]["parameters"])


@pytest.mark.integration
def test_a_plain_chat_request_gets_text(served_base):
    _, server = served_base
    reply, seconds = ask(server, LLMRequest([{"role": "user", "content": "Say hello."}], max_tokens=32))
    print(f"\nplain chat: {seconds:.1f} s, {reply.content!r}")
    assert reply.content.strip() and not reply.tool_calls()
