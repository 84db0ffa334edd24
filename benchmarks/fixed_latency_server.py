"""A loopback LLM server with a fixed per-request latency, for client benchmarks.

It speaks two shapes: OpenAI-compatible `POST .../chat/completions` and Gemini's REST
`POST .../models/<model>:generateContent` (what google-genai sends on Vertex AI). A bare
`asyncio.Protocol` (no streams, no per-request task or thread, no web framework) in its own
process, so it never competes with the client's event loop and stays far from being the
bottleneck on 2 cores at thousands of requests a second.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

REPLY = {"id": "bench", "object": "chat.completion", "created": 0, "model": "bench",
         "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
GEMINI_REPLY = {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 6},
                "modelVersion": "bench"}


def _response(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + body)


OPENAI_RESPONSE = _response(json.dumps(REPLY).encode())
GEMINI_RESPONSE = _response(json.dumps(GEMINI_REPLY).encode())
MODELS_RESPONSE = _response(b'{"object": "list", "data": [{"id": "bench"}]}')


class _Counter:
    requests = 0


class _HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: each POST is answered `latency_s` after it has fully arrived."""

    def __init__(self, latency_s: float, counter: _Counter) -> None:
        self.latency_s = latency_s
        self.counter = counter
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            method, path = head.split(" ", 2)[:2]
            if method == "POST":
                self.counter.requests += 1
                reply = GEMINI_RESPONSE if ":generateContent" in path else OPENAI_RESPONSE
                asyncio.get_running_loop().call_later(self.latency_s, self._send, reply)
            elif path.endswith("/stats"):
                self._send(_response(json.dumps({"requests": self.counter.requests}).encode()))
            else:
                self._send(MODELS_RESPONSE)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def _serve(port: int, latency_s: float) -> None:
    counter = _Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HttpProtocol(latency_s, counter), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def _run(port: int, latency_s: float) -> None:
    asyncio.run(_serve(port, latency_s))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FixedLatencyServer:
    def __init__(self, port: int) -> None:
        self.port = port

    @property
    def root_url(self) -> str:
        """What google-genai takes as `base_url` (it appends `v1beta1/projects/...`)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def requests(self) -> int:
        with urllib.request.urlopen(f"{self.base_url}/stats", timeout=5) as r:
            return json.loads(r.read())["requests"]


@contextmanager
def in_process(target: Callable[[int, float], None], latency_s: float) -> Iterator[int]:
    """Run `target(port, latency_s)` (a loopback server) in a spawned process; yield its port once
    `GET /v1/stats` answers, and kill the process on exit."""
    port = _free_port()
    process = mp.get_context("spawn").Process(target=target, args=(port, latency_s), daemon=True)
    process.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/stats", timeout=5):
                break
        except OSError:
            if time.monotonic() > deadline or not process.is_alive():
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield port
    finally:
        process.kill()
        process.join()


@contextmanager
def fixed_latency_server(latency_s: float) -> Iterator[FixedLatencyServer]:
    with in_process(_run, latency_s) as port:
        yield FixedLatencyServer(port)
