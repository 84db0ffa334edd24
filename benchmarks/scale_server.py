"""The scripted teacher and student (`scripted_model`) served over HTTP on loopback with a fixed latency.

Pure asyncio in its own process, like `fixed_latency_server`, so the pipeline's client and
HTTP path are what the benchmark measures, and the server (which parses every request body
and fills its schema) never competes with the pipeline's event loop. `GET /v1/stats` counts
the POSTs it answered, the bytes it read and its CPU seconds, so the client's figures can be
checked from the other side.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.fixed_latency_server import in_process
from benchmarks.scripted_model import completion


def _response(body: bytes, status: bytes = b"200 OK") -> bytes:
    head = f"HTTP/1.1 {status.decode()}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "Connection: keep-alive\r\n\r\n").encode() + body


async def _serve(port: int, latency_s: float) -> None:
    stats = {"requests": 0, "request_bytes": 0, "errors": 0}

    async def reply(body: bytes) -> bytes:
        started = time.monotonic()
        try:
            out = json.dumps(completion(json.loads(body), len(body))).encode()
        except Exception as exc:  # a bug in the script must show as a failed call, not a hung one
            stats["errors"] += 1
            return _response(json.dumps({"error": {"message": repr(exc)}}).encode(), b"500 Internal Server Error")
        # the latency is the model's, from the request's arrival; the scripting's CPU counts inside it
        await asyncio.sleep(max(0.0, latency_s - (time.monotonic() - started)))
        return _response(out)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = next((int(x.split(":", 1)[1]) for x in lines if x.lower().startswith("content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                if method == "POST":
                    stats["requests"] += 1
                    stats["request_bytes"] += len(body)
                    writer.write(await reply(body))
                elif path.endswith("/stats"):
                    writer.write(_response(json.dumps(stats | {"cpu_s": time.process_time()}).encode()))
                else:
                    writer.write(_response(b'{"object": "list", "data": [{"id": "scripted"}]}'))
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


class ScriptedServer:
    def __init__(self, port: int, latency_s: float) -> None:
        self.port = port
        self.latency_s = latency_s

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/stats", timeout=5) as r:
            return json.loads(r.read())

    def requests(self) -> int:
        return int(self.stats()["requests"])


@contextmanager
def scripted_server(latency_s: float) -> Iterator[ScriptedServer]:
    """Start the server in a spawned process; stop it on exit."""
    with in_process(_run, latency_s) as port:
        yield ScriptedServer(port, latency_s)
