"""Request shapes for servers with and without native tool calling, and the HTTP layer (aiohttp) that sends them."""

import asyncio
import gzip
import json
import re
import socket
import socketserver
import ssl
import threading
import time

import pytest

from magnet_dagster.llm.client import LLMRequest
from magnet_dagster.llm.openai_backend import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    JsonHttp,
    OpenAICompatibleBackend,
    RateLimitError,
    env_proxy,
    parse_chat_completion,
    status_error,
)

TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {"type": "object"}}}]
HISTORY = [
    {"role": "system", "content": "Be helpful."},
    {"role": "user", "content": "2+3?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
    {"role": "tool", "tool_call_id": "c0", "name": "add", "content": '{"result": 5}'},
]


def test_native_servers_get_tools_and_json_schema():
    backend = OpenAICompatibleBackend("http://x/v1", "m", name="vllm")
    kw = backend.request_kwargs(LLMRequest(HISTORY, tools=TOOLS, response_schema={"type": "object"}))
    assert kw["tools"] == TOOLS and kw["messages"] == HISTORY
    assert kw["response_format"]["type"] == "json_schema"


def test_llama_cpp_gets_tools_in_the_system_prompt_and_hermes_text():
    backend = OpenAICompatibleBackend("http://x/v1", "m", name="local", structured_output="llama_cpp",
                                      native_tools=False)
    kw = backend.request_kwargs(LLMRequest(HISTORY, tools=TOOLS, response_schema={"type": "object"}))
    assert "tools" not in kw
    assert kw["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    system, user, assistant, tool = kw["messages"]
    assert system["content"].startswith("Be helpful.") and '"name": "add"' in system["content"]
    assert assistant["content"].startswith("<tool_call>")
    assert json.loads(assistant["content"][len("<tool_call>"):-len("</tool_call>")])["arguments"] == {"a": 2, "b": 3}
    assert tool == {"role": "user", "content": '<tool_response>{"result": 5}</tool_response>'}


def test_llama_cpp_flattens_tool_messages_even_without_tools():
    backend = OpenAICompatibleBackend("http://x/v1", "m", name="local", native_tools=False)
    kw = backend.request_kwargs(LLMRequest(HISTORY))
    assert all(m["role"] in ("system", "user", "assistant") and isinstance(m["content"], str) for m in kw["messages"])


# ------------------------------------------------------------------ the HTTP layer, against a raw loopback server

REPLY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}}],
         "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
BODY = json.dumps(REPLY).encode()


def _framed(body: bytes = BODY, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


class RawServer:
    """Answers each request on a connection with the next scripted raw reply (bytes; `None` closes at once).

    Counts connections, and how many were open at once; records each request's head.
    """

    def __init__(self, replies: list[bytes | None], close_after_each: bool = False, delay_s: float = 0.0,
                 tls: "ssl.SSLContext | None" = None) -> None:
        self.replies, self.close_after_each, self.delay_s, self.tls = list(replies), close_after_each, delay_s, tls
        self.connections = self.open_now = self.most_open = 0
        self.heads: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with outer.lock:
                    outer.connections += 1
                    outer.open_now += 1
                    outer.most_open = max(outer.most_open, outer.open_now)
                try:
                    outer.serve(outer.tls.wrap_socket(self.request, server_side=True) if outer.tls else self.request)
                finally:
                    with outer.lock:
                        outer.open_now -= 1

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def serve(self, sock: socket.socket) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(data) < length:
                data += sock.recv(65536)
            data = data[length:]
            with self.lock:
                self.heads.append(head.decode("latin-1"))
                reply = self.replies.pop(0) if self.replies else _framed()
            time.sleep(self.delay_s)
            if reply is None:
                return
            sock.sendall(reply)
            if self.close_after_each:
                time.sleep(0.05)
                return

    def __enter__(self) -> "RawServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def _ask(backend: OpenAICompatibleBackend, n: int = 1, together: bool = False) -> list:
    async def main() -> list:
        try:
            requests = [LLMRequest([{"role": "user", "content": f"q{i}"}]) for i in range(n)]
            if together:
                return list(await asyncio.gather(*(backend.complete(r) for r in requests)))
            return [await backend.complete(r) for r in requests]
        finally:
            await backend.aclose()

    return asyncio.run(main())


def _backend(url: str, **kw) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(url, "m", api_key="sk-test", timeout_s=2, max_backoff_s=0.01, **kw)


def test_requests_carry_the_json_body_and_the_key_and_replies_reuse_one_connection():
    with RawServer([]) as server:
        replies = _ask(_backend(server.url), n=3)
    assert [r.message for r in replies] == [{"role": "assistant", "content": "fine"}] * 3
    assert (replies[0].input_tokens, replies[0].output_tokens) == (3, 1)
    assert server.connections == 1
    head = server.heads[0]
    assert head.startswith("POST /v1/chat/completions HTTP/1.1") and "Authorization: Bearer sk-test" in head


@pytest.mark.parametrize("reply", [
    # chunked, with a chunk extension and a trailer
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x;ext=1\r\n" % 10 + BODY[:10] + b"\r\n"
    + b"%x\r\n" % (len(BODY) - 10) + BODY[10:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
    # gzip-encoded, after an interim 100 Continue
    b"HTTP/1.1 100 Continue\r\n\r\n" + _framed(gzip.compress(BODY), "Content-Encoding: gzip\r\n"),
    # HTTP/1.0, no length: the body runs to the end of the connection
    b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY,
], ids=["chunked", "gzip-after-100", "until-close"])
def test_reply_framings_are_read_whole(reply):
    with RawServer([reply, _framed()], close_after_each=reply.startswith(b"HTTP/1.0")) as server:
        first, second = _ask(_backend(server.url), n=2)
    assert first.message["content"] == second.message["content"] == "fine"


def test_a_server_that_closes_each_connection_after_saying_so_costs_no_failure():
    with RawServer([_framed(extra="Connection: close\r\n")] * 3, close_after_each=True) as server:
        replies = _ask(_backend(server.url, max_attempts=1), n=3)
    assert len(replies) == 3 and server.connections == 3 and len(server.heads) == 3


def test_a_kept_alive_connection_the_server_closed_silently_is_retried_on_a_new_one():
    with RawServer([], close_after_each=True) as server:
        replies = _ask(_backend(server.url), n=3)
    assert [r.message["content"] for r in replies] == ["fine"] * 3 and server.connections >= 3


def test_one_backend_serves_one_event_loop_after_another():
    with RawServer([]) as server:
        backend = _backend(server.url)
        request = LLMRequest([{"role": "user", "content": "q"}])
        first = asyncio.run(backend.complete(request))  # no aclose: the next loop starts its own session
        second = _ask(backend)[0]
    assert first.message == second.message == {"role": "assistant", "content": "fine"}
    assert server.connections == 2


def test_connections_never_exceed_max_connections():
    with RawServer([], delay_s=0.05) as server:
        replies = _ask(_backend(server.url, max_connections=2), n=6, together=True)
    assert len(replies) == 6 and server.most_open == 2 and server.connections == 2


def test_statuses_get_the_openai_sdk_error_names_and_transient_ones_are_retried():
    error = json.dumps({"error": {"message": "slow down"}}).encode()
    rate_limited = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: %d\r\n\r\n" % len(error)) + error
    with RawServer([rate_limited, b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"]) as server:
        assert _ask(_backend(server.url))[0].message["content"] == "fine" and len(server.heads) == 3
    unauthorized = (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n" % len(error)) + error
    with RawServer([unauthorized]) as server, pytest.raises(AuthenticationError, match="401.*slow down"):
        _ask(_backend(server.url))
    assert issubclass(RateLimitError, APIStatusError) and status_error(503, b"x").status_code == 503


def test_a_malformed_reply_is_a_connection_error_and_retried():
    with RawServer([b"HTTP/1.1 OK\r\n\r\n"]) as server:
        assert _ask(_backend(server.url))[0].message["content"] == "fine"
        assert server.connections == 2
    with RawServer([b"garbage\r\n\r\n"] * 3) as server, pytest.raises(APIConnectionError, match="Bad status line"):
        _ask(_backend(server.url, max_attempts=3))
    assert len(server.heads) == 3


def test_a_200_that_is_not_a_chat_completion_is_not_retried():
    with RawServer([_framed(b'{"choices": []}')]) as server, pytest.raises(APIResponseValidationError):
        _ask(_backend(server.url))
    assert len(server.heads) == 1


def _proxy_env(monkeypatch, proxy: str, no_proxy: str) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", no_proxy)


def test_requests_go_through_the_proxy_the_environment_names(monkeypatch):
    with RawServer([]) as proxy:
        _proxy_env(monkeypatch, f"http://127.0.0.1:{proxy.server.server_address[1]}", "localhost")
        replies = _ask(_backend("http://api.example.invalid/v1"), n=2)
    assert [r.message["content"] for r in replies] == ["fine", "fine"]
    assert proxy.heads[0].startswith("POST http://api.example.invalid/v1/chat/completions HTTP/1.1")
    assert "Authorization: Bearer sk-test" in proxy.heads[0]


def test_a_proxy_in_the_environment_is_honoured_for_matching_hosts_only(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert env_proxy("http://api.example.com/v1/chat/completions") == "http://proxy.invalid:3128"
    assert env_proxy("http://localhost:8000/v1/chat/completions") is None


def test_tool_calls_come_back_in_the_openai_message_shape():
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]}}]}).encode()
    reply = parse_chat_completion(body)
    assert reply.message == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]}
    assert (reply.input_tokens, reply.output_tokens) == (0, 0)


def _self_signed_localhost() -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for `localhost`, made here: no network, no files kept."""
    x509 = pytest.importorskip("cryptography.x509")
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_https_checks_the_certificate_and_the_host_name(tmp_path):
    cert, key = _self_signed_localhost()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    with RawServer([], tls=server_tls) as server:
        url = f"https://localhost:{server.server.server_address[1]}/v1"
        trusting = _backend(url)
        trusting._http = JsonHttp(timeout_s=2, ssl_context=ssl.create_default_context(cadata=cert.decode()))
        assert [r.message["content"] for r in _ask(trusting, n=2)] == ["fine", "fine"]
        assert server.connections == 1 and server.heads[0].startswith("POST /v1/chat/completions HTTP/1.1")
        with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            _ask(_backend(url, max_attempts=1))  # the system's trust store does not know it
