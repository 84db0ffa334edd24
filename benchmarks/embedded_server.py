"""Where the embedded server's time goes: its throughput by concurrency, and a demo run's stages.

Part 1 starts the embedded llama.cpp server (as the pipeline does) and sends the same mix of
the pipeline's own requests (the graph judge's for the bundled tool set, and query-translation
prompts that share their instructions) at concurrency 1, 4 and 8, each on a fresh server:
prompt tokens evaluated per second, generated tokens per second, and prompt tokens evaluated
against prompt tokens sent (the rest came from the server's prefix cache), with the ratio to
concurrency 1 measured in the same run. Where the server loads the packaged GGUF re-encoded
(`reencode`: BF16 on an AVX512-BF16 CPU), the same mix at the server's slot count on the packaged
Q4_1 file is the baseline the re-encoded file's speed-up is measured against.

Part 2 reads `llm_calls` of the latest demo run in `$MAGNET_HOME` (if there is one): per stage,
its calls, input and output tokens, summed LLM latency and its share of the demo's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from magnet_dagster import config
from magnet_dagster.graph.candidates import candidate_pairs
from magnet_dagster.graph.judge import edge_request
from magnet_dagster.llm.client import LLMRequest
from magnet_dagster.llm.local_server import (
    LocalLlamaServer,
    acquire,
    default_gguf,
    parallel_slots,
    release,
    served_gguf,
)
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.synthesis.catalog import load_catalog
from magnet_dagster.synthesis.prompts import BACK_PROMPT, QUERY_SCHEMA
from magnet_dagster.synthesis.translation import task_text

ROOT = Path(__file__).resolve().parents[1]


def request_mix(tool_set: str = "bfcl_demo", judges: int = 4, queries: int = 12) -> list[LLMRequest]:
    """The pipeline's own request shapes for the bundled tool set: graph-judge requests (long
    structured outputs) and back-translation requests (shared instructions, short outputs)."""
    catalog = load_catalog(tool_set, ROOT / "tool_sets")
    specs = {s.name: s for s in catalog.kept}
    pairs = candidate_pairs(catalog.kept, k=catalog.options.candidates_per_function)
    judge = [
        edge_request(specs[source], [specs[c.target] for c in candidates])
        for source, candidates in list(pairs.items())[:judges]
        if candidates
    ]
    ask = [
        LLMRequest(
            messages=[
                {
                    "role": "user",
                    "content": BACK_PROMPT.format(context="", task=task_text(spec), values=f"n={i}"),
                }
            ],
            response_schema=QUERY_SCHEMA,
            max_tokens=160,
        )
        for i, spec in enumerate((catalog.kept * queries)[:queries])
    ]
    return judge + ask


@dataclass
class LevelResult:
    concurrency: int
    wall_s: float
    requests: int
    prompt_sent: int
    prompt_evaluated: int
    generated: int
    #: per-request phase times summed (they overlap when requests run together)
    prompt_ms: float
    generated_ms: float

    @property
    def generated_tps(self) -> float:
        """Tokens generated per second of wall time, all requests together (the throughput)."""
        return self.generated / self.wall_s

    @property
    def prompt_phase_tps(self) -> float:
        """How fast one request's prompt is evaluated (prompt tokens over its prompt phase)."""
        return self.prompt_evaluated / max(self.prompt_ms / 1000, 1e-9)

    @property
    def generated_phase_tps(self) -> float:
        """How fast one request generates (shrinks as more requests share the decode steps)."""
        return self.generated / max(self.generated_ms / 1000, 1e-9)


async def _drive(base_url: str, model: str, requests: list[LLMRequest], concurrency: int) -> LevelResult:
    backend = OpenAICompatibleBackend(
        base_url=base_url, model=model, name="local", structured_output="llama_cpp", native_tools=False
    )
    sem = asyncio.Semaphore(concurrency)
    totals = {"sent": 0, "evaluated": 0, "generated": 0, "prompt_ms": 0.0, "generated_ms": 0.0}
    async with httpx.AsyncClient(timeout=600) as http:

        async def one(request: LLMRequest) -> None:
            async with sem:
                body = backend.request_kwargs(request)
                response = (await http.post(f"{base_url}/chat/completions", json=body)).json()
            timings: dict[str, Any] = response.get("timings") or {}
            usage = response.get("usage") or {}
            totals["sent"] += int(usage.get("prompt_tokens", 0))
            totals["evaluated"] += int(timings.get("prompt_n", usage.get("prompt_tokens", 0)))
            totals["generated"] += int(usage.get("completion_tokens", 0))
            totals["prompt_ms"] += float(timings.get("prompt_ms", 0.0))
            totals["generated_ms"] += float(timings.get("predicted_ms", 0.0))

        start = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests))
        wall = time.perf_counter() - start
    return LevelResult(
        concurrency,
        wall,
        len(requests),
        int(totals["sent"]),
        int(totals["evaluated"]),
        int(totals["generated"]),
        totals["prompt_ms"],
        totals["generated_ms"],
    )


def measure_level(requests: list[LLMRequest], concurrency: int, log_dir: Path, gguf: Path | None = None) -> LevelResult:
    """One concurrency level on a freshly started server (an empty prefix cache)."""
    server: LocalLlamaServer = acquire(gguf, log_path=log_dir / f"bench_llama_server_c{concurrency}.log")
    try:
        return asyncio.run(_drive(server.base_url, server.model_name, requests, concurrency))
    finally:
        release(server)


def server_table(levels: list[int], repeats: int, requests: list[LLMRequest], log_dir: Path) -> None:
    results = {c: [measure_level(requests, c, log_dir) for _ in range(repeats)] for c in levels}
    keys = ("wall_s", "generated_tps", "prompt_phase_tps", "generated_phase_tps")
    med = {c: {k: statistics.median(getattr(r, k) for r in rs) for k in keys} for c, rs in results.items()}
    base = med[levels[0]]
    print(f"Embedded server, {len(requests)} pipeline requests per level, medians of {repeats} runs")
    print(
        "  conc   wall s  speed-up   gen tok/s (all)   per request: prompt tok/s  gen tok/s"
        "   prompt tokens evaluated / sent"
    )
    for c in levels:
        r, m = results[c][0], med[c]
        print(
            f"  {c:4d} {m['wall_s']:8.1f} {base['wall_s'] / m['wall_s']:8.2f}x {m['generated_tps']:14.1f}"
            f" {m['prompt_phase_tps']:24.0f} {m['generated_phase_tps']:10.1f}"
            f"   {r.prompt_evaluated} / {r.prompt_sent} ({r.prompt_evaluated / max(r.prompt_sent, 1):.2f})"
        )


def format_table(repeats: int, requests: list[LLMRequest], log_dir: Path) -> None:
    """The served file against the packaged one, at the server's slot count (both fully busy)."""
    packaged, served = default_gguf(), served_gguf()
    if packaged.resolve() == served.resolve():
        print(f"(the server loads {packaged.name} as it is: no re-encoding to compare, see MAGNET_LOCAL_BF16)")
        return
    slots = parallel_slots()
    runs = {g: [measure_level(requests, slots, log_dir, g) for _ in range(repeats)] for g in (packaged, served)}
    med = {
        g: (statistics.median(r.wall_s for r in rs), statistics.median(r.generated_tps for r in rs))
        for g, rs in runs.items()
    }
    print(f"Packaged vs served GGUF, concurrency {slots} ({slots} slots), medians of {repeats} runs")
    print("  file                                        wall s  speed-up   gen tok/s (all)")
    for g in (packaged, served):
        print(f"  {g.name:<42} {med[g][0]:7.1f} {med[packaged][0] / med[g][0]:8.2f}x {med[g][1]:14.1f}")


def stage_table(store: LineageStore, tool_set: str) -> None:
    """Per stage of the latest run of each asset for `tool_set` (new requests only count tokens)."""
    rows = store.query(
        """
        WITH latest AS (
            SELECT asset, arg_max(run_id, created_at) AS run_id FROM llm_calls WHERE tool_set = ? GROUP BY asset
        )
        SELECT c.asset, count(*) AS calls, count(*) FILTER (WHERE NOT c.cache_hit) AS new_requests,
               sum(c.input_tokens) AS input_tokens, sum(c.output_tokens) AS output_tokens,
               sum(c.latency_ms) / 1000 AS llm_s,
               -- a call is recorded when it ends: the stage began at its earliest call's start
               epoch(max(c.created_at) - min(c.created_at - to_milliseconds(CAST(c.latency_ms AS BIGINT)))) AS wall_s
        FROM llm_calls c JOIN latest USING (asset, run_id)
        WHERE c.tool_set = ?
        GROUP BY c.asset ORDER BY min(c.created_at)
        """,
        [tool_set, tool_set],
    )
    if not rows:
        print(f"(no llm_calls for {tool_set!r} in {store.path}: run `make demo` first for the stage table)")
        return
    total = sum(r["wall_s"] for r in rows) or 1.0
    print(f"Demo stages from llm_calls ({tool_set}, latest run of each asset, {store.path})")
    print("  stage                 calls   new   input tok  output tok   LLM s (sum)   wall s   share")
    for r in rows:
        print(
            f"  {r['asset']:<20} {r['calls']:6d} {r['new_requests']:5d} {r['input_tokens']:11d} "
            f"{r['output_tokens']:11d} {r['llm_s']:13.1f} {r['wall_s']:8.1f} {r['wall_s'] / total:7.0%}"
        )
    print(f"  wall time of the LLM stages: {total / 60:.1f} min (first to last call of each stage)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.embedded_server", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tool-set", default="bfcl_demo")
    parser.add_argument("--judges", type=int, default=2)
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--skip-server", action="store_true", help="only the demo's stage table")
    args = parser.parse_args(argv)
    home = config.magnet_home()
    home.mkdir(parents=True, exist_ok=True)
    if not args.skip_server:
        requests = request_mix(args.tool_set, args.judges, args.queries)
        server_table(args.concurrency, args.repeats, requests, home)
        format_table(args.repeats, requests, home)
    db = config.lineage_db_path()
    if db.exists():
        stage_table(LineageStore(db), args.tool_set)
    else:
        print(f"(no lineage DB at {db}: run `make demo` first for the stage table)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
