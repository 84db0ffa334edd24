"""A loopback OpenAI-compatible server with a fixed per-request latency, for client benchmarks.

Pure asyncio (no per-request threads, no web framework) in its own process, so it never
competes with the client's event loop and is not the bottleneck on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

REPLY = {"id": "bench", "object": "chat.completion", "created": 0, "model": "bench",
         "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


def _response(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + body)


async def _serve(port: int, latency_s: float) -> None:
    count = 0
    body = json.dumps(REPLY).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = next((int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                if method == "POST":
                    count += 1
                    await asyncio.sleep(latency_s)
                    writer.write(_response(body))
                elif path.endswith("/stats"):
                    writer.write(_response(json.dumps({"requests": count}).encode()))
                else:
                    writer.write(_response(b'{"object": "list", "data": [{"id": "bench"}]}'))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
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
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests(self) -> int:
        with urllib.request.urlopen(f"{self.base_url}/stats", timeout=5) as r:
            return json.loads(r.read())["requests"]


@contextmanager
def fixed_latency_server(latency_s: float) -> Iterator[FixedLatencyServer]:
    port = _free_port()
    process = mp.get_context("spawn").Process(target=_run, args=(port, latency_s), daemon=True)
    process.start()
    server = FixedLatencyServer(port)
    deadline = time.monotonic() + 20
    while True:
        try:
            server.requests()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield server
    finally:
        process.kill()
        process.join()
