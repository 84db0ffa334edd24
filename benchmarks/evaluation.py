"""Evaluation client throughput: teacher-forced replay of a test split, concurrent vs sequential.

The same generated test conversations are replayed against one fixed-latency loopback
server by the project's evaluation runner with its client at concurrency N and at 1; the
ratio of turns scored per second is printed (medians of several runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.fixed_latency_server import fixed_latency_server
from magnet_dagster.evaluation.runner import teacher_forced
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.spec import FunctionSpec

ADD = FunctionSpec("add", "Add two numbers.", {"type": "object", "properties": {
    "a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]})


def conversations(n: int, turns: int) -> list[dict]:
    out = []
    for c in range(n):
        messages = [{"role": "system", "content": "You can call functions."}]
        for t in range(turns):
            call = {"id": f"c{t}", "type": "function", "function": {"name": "add",
                                                                     "arguments": json.dumps({"a": c, "b": t})}}
            messages += [{"role": "user", "content": f"conversation {c}: add {c} and {t}"},
                         {"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": f"c{t}", "content": json.dumps({"result": c + t})}]
        out.append({"trajectory_id": f"t{c}", "tools": [ADD.openai_tool()], "messages": messages})
    return out


async def replay(base_url: str, home: Path, concurrency: int, tests: list[dict]) -> float:
    backend = OpenAICompatibleBackend(base_url=base_url, model="bench", name="openai")
    client = LLMClient(backend, LineageStore(home / "lineage.duckdb"), home / f"journal{concurrency}",
                       concurrency=concurrency).open()
    start = time.perf_counter()
    verdicts = await asyncio.gather(*(teacher_forced(client, t, {"add": ADD}, []) for t in tests))
    elapsed = time.perf_counter() - start
    await client.aclose()
    return sum(len(v) for v in verdicts) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.evaluation", description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=60)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    concurrent, sequential = [], []
    with fixed_latency_server(args.latency_ms / 1000) as server:
        for r in range(args.repeats):
            tests = conversations(args.conversations, args.turns)
            for t in tests:  # fresh requests each repeat: nothing served from the cache
                t["messages"][0] = {"role": "system", "content": f"You can call functions. (run {r})"}
            with tempfile.TemporaryDirectory() as tmp:
                concurrent.append(asyncio.run(replay(server.base_url, Path(tmp), args.concurrency, tests)))
                sample = [t | {"messages": [{"role": "system", "content": f"sequential (run {r})"}] + t["messages"][1:]}
                          for t in tests[: max(2, args.conversations // 10)]]
                sequential.append(asyncio.run(replay(server.base_url, Path(tmp), 1, sample)))
    c, s = statistics.median(concurrent), statistics.median(sequential)
    print(f"evaluation replay, {args.conversations} conversations x {args.turns} turns, latency {args.latency_ms:.0f} ms, "
          f"medians of {args.repeats} runs (turns scored per second)")
    print(f"  concurrent (N={args.concurrency})   {c:8.1f}   {c / s:.1f}x sequential, "
          f"{c / (args.concurrency / (args.latency_ms / 1000)):.3f} of ideal")
    print(f"  sequential (N=1)      {s:8.1f}   (on {max(2, args.conversations // 10)} conversations)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
