"""`LLMClient` start-up and per-call overhead with many cached answers on disk (default 10,000 and 1,000,000).

The cache is looked up by key per request (the keys asked within one event-loop tick in one
query, in a worker thread), so opening a client must not read `llm_cache` at all. Measured with
an instant in-process backend, so only the client's own cost shows: start-up (`open()`), the
first answer (open + one cached call: the store's first connect and schema check), per-call
cost of hits and of misses when many calls are asked at once (batched lookups) and one at a
time (a lookup per call), memory added by open and the hits, and the journal flush at close.
`--reference-max` also times the whole-cache load the client did before (every row of the
model read and vetted), for the sizes up to it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from magnet_dagster.llm.client import LLMClient, LLMRequest, RawReply, _load_response, cache_key
from magnet_dagster.store.lineage import LineageStore

BACKEND, MODEL = "bench", "bench-model"
ANSWER = "an answer of about the length a judge or a query writer gives, with a few words more " * 3


class InstantBackend:
    """Answers at once, so what is timed is the client (key, lookup, journal), not a server."""

    name, model = BACKEND, MODEL

    async def complete(self, request: LLMRequest) -> RawReply:
        return RawReply({"role": "assistant", "content": ANSWER}, 50, 30)

    async def aclose(self) -> None:
        return None


def _requests(n: int, tag: str) -> list[LLMRequest]:
    system = {"role": "system", "content": "You write one question a user would ask of these tools. " * 8}
    return [LLMRequest(messages=[system, {"role": "user", "content": f"{tag} tool set {i}"}]) for i in range(n)]


def fill(store: LineageStore, filler: int, hits: list[LLMRequest]) -> float:
    """`filler` cached answers under keys no request asks (one INSERT ... SELECT from range()), plus the
    answers of `hits` under their real keys; returns seconds taken."""
    start = time.perf_counter()
    response = '{"message": {"role": "assistant", "content": "' + ANSWER + ' #\' || i::VARCHAR || \'"}, ' \
        '"input_tokens": 50, "output_tokens": 30}'
    with store.connect() as con:
        con.execute(
            "INSERT INTO llm_cache SELECT sha256('filler ' || i::VARCHAR), ?, ?, "
            f"('{response}')::JSON, TIMESTAMP '2025-01-01' FROM range(?) t(i)",
            [BACKEND, MODEL, filler],
        )
    store.append("llm_cache", [
        {"cache_key": cache_key(BACKEND, MODEL, r), "backend": BACKEND, "model": MODEL, "created_at": "2025-01-01",
         "response": {"message": {"role": "assistant", "content": ANSWER}, "input_tokens": 50, "output_tokens": 30}}
        for r in hits
    ])
    return time.perf_counter() - start


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _client(home: Path) -> LLMClient:
    # A fresh store object, as a new process has: its first connect applies the schema.
    return LLMClient(InstantBackend(), LineageStore(home / "lineage.duckdb"), home / "journal", tool_set="bench",
                     run_id="bench", concurrency=256)


async def _gather(client: LLMClient, requests: list[LLMRequest], hit: bool) -> tuple[float, float]:
    """(wall us a call, CPU us a call) for all `requests` asked at once."""
    start, cpu = time.perf_counter(), time.process_time()
    replies = await client.gather(requests)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    assert all(r.cache_hit == hit and r.ok for r in replies)
    return elapsed / len(requests) * 1e6, used / len(requests) * 1e6


async def _one_at_a_time(client: LLMClient, requests: list[LLMRequest], hit: bool) -> float:
    """Median ms a call when each waits for the one before (a lookup each)."""
    times = []
    for request in requests:
        start = time.perf_counter()
        reply = await client.chat(request)
        times.append((time.perf_counter() - start) * 1000)
        assert reply.cache_hit == hit
    return statistics.median(times)


def measure(home: Path, hits: list[LLMRequest], sequential: int, tag: str) -> dict[str, float]:
    out: dict[str, float] = {}
    rss = rss_mb()
    start = time.perf_counter()
    client = _client(home).open()
    out["open_s"] = time.perf_counter() - start

    async def run() -> None:
        reply = await client.chat(hits[0])
        out["first_answer_s"] = time.perf_counter() - start
        assert reply.cache_hit
        out["hit_us"], out["hit_cpu_us"] = await _gather(client, hits[1 + sequential:], True)
        out["miss_us"], out["miss_cpu_us"] = await _gather(client, _requests(len(hits), f"miss {tag}"), False)
        out["hit_one_ms"] = await _one_at_a_time(client, hits[1:1 + sequential], True)
        out["miss_one_ms"] = await _one_at_a_time(client, _requests(sequential, f"one miss {tag}"), False)
        out["rss_mb"] = rss_mb() - rss
        flush = time.perf_counter()
        await client.aclose()
        out["flush_s"] = time.perf_counter() - flush

    asyncio.run(run())
    return out


def whole_load(home: Path) -> float:
    """Seconds the old `open()` took: every row of the model read and vetted into a dict."""
    client = _client(home)
    start = time.perf_counter()
    rows = client.store.query(
        "SELECT cache_key, CAST(response AS VARCHAR) AS response FROM llm_cache WHERE backend = ? AND model = ?",
        [BACKEND, MODEL])
    loaded: dict[str, Any] = {r["cache_key"]: _load_response(r["response"], client.limits) for r in rows}
    assert loaded
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.cache_startup", description=__doc__.splitlines()[0])
    parser.add_argument("--cached", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--calls", type=int, default=2000, help="hits (and misses) asked at once")
    parser.add_argument("--sequential", type=int, default=20, help="hits (and misses) asked one at a time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-max", type=int, default=100_000,
                        help="time the old whole-cache load for sizes up to this (0: never)")
    args = parser.parse_args(argv)
    status = 0
    for cached in args.cached:
        with tempfile.TemporaryDirectory(prefix="magnet-cache-bench-") as tmp:
            home = Path(tmp)
            hits = _requests(1 + args.sequential + args.calls, "hit")
            filled = fill(LineageStore(home / "lineage.duckdb"), max(cached - len(hits), 0), hits)
            size_mb = (home / "lineage.duckdb").stat().st_size / 1e6
            runs = [measure(home, hits, args.sequential, f"{cached}-{i}") for i in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            reference = whole_load(home) if cached <= args.reference_max else None
        print(f"LLMClient with {cached:,} cached answers on disk ({size_mb:.0f} MB lineage DB, filled in "
              f"{filled:.1f} s), medians of {args.repeats} runs")
        print(f"  start-up, open():                              {med['open_s'] * 1000:8.1f} ms")
        print(f"  first answer (open + one cached call):         {med['first_answer_s'] * 1000:8.1f} ms")
        if reference is not None:
            print(f"  the old whole-cache load at open, for scale:   {reference * 1000:8.1f} ms")
        print(f"  {args.calls} hits asked at once:    {med['hit_us']:7.0f} us a call wall, "
              f"{med['hit_cpu_us']:5.0f} us CPU")
        print(f"  {args.calls} misses asked at once:  {med['miss_us']:7.0f} us a call wall, "
              f"{med['miss_cpu_us']:5.0f} us CPU (instant backend)")
        print(f"  one at a time: a hit {med['hit_one_ms']:.1f} ms, a miss {med['miss_one_ms']:.1f} ms (a lookup each)")
        calls = args.calls * 2 + 2 * args.sequential + 1
        print(f"  memory added by open and {calls} calls: {max(med['rss_mb'], 0.0):.0f} MB RSS; "
              f"journal flush at close: {med['flush_s'] * 1000:.0f} ms")
        if med["open_s"] >= 1.0:
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
