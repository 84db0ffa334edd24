"""LLM client throughput against a fixed-latency loopback server, as fractions of the ideal rate.

At each concurrency N (default 64 and 256) the ideal is N/latency calls a second. Beside the
project's `LLMClient` (recording and cache on: key hashing, store lookups, journal) on both
backends, OpenAI-compatible and Gemini (REST `generateContent`), it runs what a user writes by
hand, a semaphore over: the openai SDK on its default httpx transport, the openai SDK on aiohttp
(`DefaultAioHttpClient`), a bare aiohttp POST loop (the ceiling of aiohttp, the project's own
transport, and the check that the server keeps up), and google-genai's client (on aiohttp, which
it picks when installed). Then the project's client at concurrency 1 (sequential), and a
full-cache rerun, which must reach the server zero times. The slow SDK loops run fewer requests
(`--reference-waves`). CPU is the client process's, per call (all its threads: the store lookups
run in one).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai

from benchmarks.fixed_latency_server import FixedLatencyServer, fixed_latency_server
from magnet_dagster.llm.client import Backend, LLMClient, LLMRequest
from magnet_dagster.llm.gemini_backend import GeminiBackend
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.store.lineage import LineageStore

GEMINI_MODEL = "gemini-2.5-flash"
GEMINI_PROJECT = "bench-project"


def _requests(n: int, tag: str) -> list[LLMRequest]:
    return [LLMRequest(messages=[{"role": "user", "content": f"{tag} question {i}"}]) for i in range(n)]


async def _timed(n: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """(calls/s, client CPU us a call) for `n` calls of `one(i)`, at most `concurrency` at once."""
    sem = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with sem:
            await one(i)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(bounded(i) for i in range(n)))
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6


async def openai_httpx(server: FixedLatencyServer, n: int, concurrency: int) -> tuple[float, float]:
    """The openai SDK on its default transport (httpx), pool sized for the concurrency."""
    pool = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0,
                                http_client=httpx.AsyncClient(limits=pool))
    try:
        return await _timed(n, concurrency, lambda i: client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": f"httpx {i}"}]))
    finally:
        await client.close()


async def openai_aiohttp(server: FixedLatencyServer, n: int, concurrency: int) -> tuple[float, float]:
    """The openai SDK on aiohttp (`openai[aiohttp]`)."""
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0,
                                http_client=openai.DefaultAioHttpClient())
    try:
        return await _timed(n, concurrency, lambda i: client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": f"sdk-aiohttp {i}"}]))
    finally:
        await client.close()


async def plain_aiohttp(server: FixedLatencyServer, n: int, concurrency: int) -> tuple[float, float]:
    """A bare aiohttp POST loop: JSON in, JSON out, nothing else."""
    url = server.base_url + "/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(i: int) -> None:
            body = {"model": "bench", "messages": [{"role": "user", "content": f"aiohttp {i}"}]}
            async with session.post(url, json=body) as response:
                await response.json()

        return await _timed(n, concurrency, one)


async def genai_sdk(server: FixedLatencyServer, n: int, concurrency: int) -> tuple[float, float]:
    """google-genai's own async client on Vertex AI paths (its aiohttp transport when installed)."""
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    client = genai.Client(vertexai=True, project=GEMINI_PROJECT, location="us-central1",
                          credentials=Credentials(token="bench"),
                          http_options=types.HttpOptions(base_url=server.root_url))
    try:
        return await _timed(n, concurrency, lambda i: client.aio.models.generate_content(
            model=GEMINI_MODEL, contents=f"genai {i}", config={"automatic_function_calling": {"disable": True}}))
    finally:
        await client.aio.aclose()


def openai_backend(server: FixedLatencyServer) -> Backend:
    return OpenAICompatibleBackend(base_url=server.base_url, model="bench", name="openai")


def gemini_backend(server: FixedLatencyServer) -> Backend:
    from google.oauth2.credentials import Credentials

    return GeminiBackend(model=GEMINI_MODEL, project=GEMINI_PROJECT, location="us-central1",
                         base_url=server.root_url, credentials=Credentials(token="bench"))


async def project_run(backend: Backend, home: Path, concurrency: int,
                      requests: list[LLMRequest]) -> tuple[float, float, int, float]:
    """(calls/s, client CPU us a call, cache hits, seconds to flush the journal into the store at close)."""
    client = LLMClient(backend, LineageStore(home / "lineage.duckdb"), home / "journal", tool_set="bench",
                       run_id="bench", concurrency=concurrency).open()
    start, cpu = time.perf_counter(), time.process_time()
    replies = await client.gather(requests)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    flush_start = time.perf_counter()
    await client.aclose()
    assert all(r.ok for r in replies), next(r.error for r in replies if not r.ok)
    hits = sum(r.cache_hit for r in replies)
    return len(requests) / elapsed, used / len(requests) * 1e6, hits, time.perf_counter() - flush_start


REFERENCES: list[tuple[str, str, Callable[[FixedLatencyServer, int, int], Awaitable[tuple[float, float]]], bool]] = [
    # (key, label, run, slow: runs --reference-waves only)
    ("aiohttp", "bare aiohttp POST loop", plain_aiohttp, False),
    ("httpx", "openai SDK on httpx + semaphore", openai_httpx, True),
    ("sdk_aiohttp", "openai SDK on aiohttp + semaphore", openai_aiohttp, False),
    ("genai", "google-genai client + semaphore", genai_sdk, True),
]
PROJECT: list[tuple[str, str, Callable[[FixedLatencyServer], Backend]]] = [
    ("ours_openai", "project client, OpenAI-compatible", openai_backend),
    ("ours_gemini", "project client, Gemini", gemini_backend),
]


def measure(concurrency: int, latency_s: float, waves: int, reference_waves: int,
            sequential_n: int) -> dict[str, float]:
    """One round of every client at one concurrency; `waves` x concurrency requests each."""
    n, n_slow = waves * concurrency, max(1, reference_waves) * concurrency
    out: dict[str, float] = {"ideal": concurrency / latency_s}
    with fixed_latency_server(latency_s) as server, tempfile.TemporaryDirectory() as tmp:
        for key, _, run, slow in REFERENCES:
            gc.collect()  # each client starts without the garbage of the one before
            out[key], out[key + "_cpu"] = asyncio.run(run(server, n_slow if slow else n, concurrency))
        for key, _, make in PROJECT:
            home = Path(tmp) / key
            reqs = _requests(n, key)
            gc.collect()
            out[key], out[key + "_cpu"], _, out[key + "_flush_s"] = asyncio.run(
                project_run(make(server), home, concurrency, reqs))
            before = server.requests()
            out[key + "_rerun"], _, out[key + "_rerun_hits"], _ = asyncio.run(
                project_run(make(server), home, concurrency, reqs))
            out[key + "_rerun_new_requests"] = server.requests() - before
        seq_home = Path(tmp) / "sequential"
        out["sequential"], _, _, _ = asyncio.run(
            project_run(openai_backend(server), seq_home, 1, _requests(sequential_n, "sequential")))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.llm_client", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[200.0])
    parser.add_argument("--waves", type=int, default=10, help="requests per client = waves x concurrency")
    parser.add_argument("--reference-waves", type=int, default=3,
                        help="the same for the slow SDK loops (httpx, google-genai)")
    parser.add_argument("--sequential-requests", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    failed = False
    for latency_ms in args.latency_ms:
        for concurrency in args.concurrency:
            runs = [measure(concurrency, latency_ms / 1000, args.waves, args.reference_waves,
                            args.sequential_requests) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            ideal = med["ideal"]
            print(f"LLM client, concurrency {concurrency}, latency {latency_ms:.0f} ms, {args.waves * concurrency} "
                  f"requests a client ({args.reference_waves * concurrency} for the SDK loops), medians of "
                  f"{args.repeats} runs")
            print(f"  {'ideal N/latency':38s} {ideal:8.1f} calls/s")
            for key, label, _, _ in REFERENCES:
                print(f"  {label:38s} {med[key]:8.1f} calls/s  {med[key] / ideal:.3f} of ideal  "
                      f"{med[key + '_cpu']:6.0f} us CPU a call")
            for key, label, _ in PROJECT:
                print(f"  {label:38s} {med[key]:8.1f} calls/s  {med[key] / ideal:.3f} of ideal  "
                      f"{med[key + '_cpu']:6.0f} us CPU a call (record + cache)")
            print(f"  {'project client, sequential':38s} {med['sequential']:8.1f} calls/s  "
                  f"({args.sequential_requests} requests, concurrency 1)")
            for key, label, _ in PROJECT:
                print(f"  {label + ', full-cache rerun':38s} {med[key + '_rerun']:8.1f} calls/s  "
                      f"{med[key + '_rerun_new_requests']:.0f} new server requests, "
                      f"{med[key + '_rerun_hits']:.0f} cache hits")
            print(f"  journal flush into the store at close: {med['ours_openai_flush_s']:.2f} s (OpenAI-compatible), "
                  f"{med['ours_gemini_flush_s']:.2f} s (Gemini), not in the calls/s above")
            failed |= any(r[key + "_rerun_new_requests"] for r in runs for key, _, _ in PROJECT)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
