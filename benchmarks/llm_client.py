"""LLM client throughput against a fixed-latency loopback server, as ratios measured in one run.

Compared at concurrency N: the ideal N/latency; a plain `AsyncOpenAI` loop with a
semaphore (what a user writes by hand; also the check that the server keeps up); the
project's `LLMClient` with its recording and cache on; the project's client at
concurrency 1 (sequential; run on a smaller sample and reported as calls/s); and a
full-cache rerun, which must reach the server zero times.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import openai

from benchmarks.fixed_latency_server import fixed_latency_server
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.store.lineage import LineageStore


def _requests(n: int, tag: str) -> list[LLMRequest]:
    return [LLMRequest(messages=[{"role": "user", "content": f"{tag} question {i}"}]) for i in range(n)]


async def plain_openai(base_url: str, n: int, concurrency: int) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, http_client=httpx.AsyncClient(
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)))
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(model="bench", messages=[{"role": "user", "content": f"raw {i}"}])

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await client.close()
    return n / elapsed


def project_client(base_url: str, home: Path, concurrency: int) -> LLMClient:
    backend = OpenAICompatibleBackend(base_url=base_url, model="bench", name="openai")
    return LLMClient(backend, LineageStore(home / "lineage.duckdb"), home / "journal", tool_set="bench",
                     run_id="bench", concurrency=concurrency).open()


async def project_run(base_url: str, home: Path, concurrency: int,
                      requests: list[LLMRequest]) -> tuple[float, int, float]:
    """(calls/s, cache hits, seconds to flush the journal into DuckDB at close)."""
    client = project_client(base_url, home, concurrency)
    start = time.perf_counter()
    replies = await client.gather(requests)
    elapsed = time.perf_counter() - start
    flush_start = time.perf_counter()
    await client.aclose()
    return len(requests) / elapsed, sum(r.cache_hit for r in replies), time.perf_counter() - flush_start


def measure(n: int, concurrency: int, latency_s: float, sequential_n: int) -> dict[str, float]:
    with fixed_latency_server(latency_s) as server, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        raw = asyncio.run(plain_openai(server.base_url, n, concurrency))
        reqs = _requests(n, "project")
        ours, _, flush_s = asyncio.run(project_run(server.base_url, home, concurrency, reqs))
        seq, _, _ = asyncio.run(project_run(server.base_url, home, 1, _requests(sequential_n, "sequential")))
        before = server.requests()
        rerun, hits, _ = asyncio.run(project_run(server.base_url, home, concurrency, reqs))
        new_requests = server.requests() - before
    return {"ideal": concurrency / latency_s, "raw": raw, "ours": ours, "sequential": seq, "rerun": rerun,
            "rerun_hits": hits, "rerun_new_requests": new_requests, "flush_s": flush_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.llm_client", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[200.0, 50.0])
    parser.add_argument("--sequential-requests", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    failed = False
    for latency_ms in args.latency_ms:
        runs = [measure(args.requests, args.concurrency, latency_ms / 1000, args.sequential_requests)
                for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"LLM client, {args.requests} requests, concurrency {args.concurrency}, latency {latency_ms:.0f} ms, "
              f"medians of {args.repeats} runs (calls/s)")
        print(f"  ideal N/latency                 {med['ideal']:8.1f}")
        print(f"  plain AsyncOpenAI + semaphore   {med['raw']:8.1f}   {med['raw'] / med['ideal']:.3f} of ideal")
        print(f"  project client (record + cache) {med['ours']:8.1f}   {med['ours'] / med['ideal']:.3f} of ideal, "
              f"{med['ours'] / med['raw']:.3f}x the plain loop, {med['ours'] / med['sequential']:.1f}x sequential")
        print(f"  project client, sequential      {med['sequential']:8.1f}   ({args.sequential_requests} requests)")
        print(f"  full-cache rerun                {med['rerun']:8.1f}   {med['rerun'] / med['ours']:.1f}x the first run, "
              f"{med['rerun_new_requests']:.0f} new server requests, {med['rerun_hits']:.0f} cache hits")
        print(f"  journal flush into DuckDB at close: {med['flush_s']:.2f} s (not in the calls/s above)")
        failed |= any(r["rerun_new_requests"] for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
