"""Graph building at catalog scale: candidates, judging cost, walks and node operations.

A generated 5,000-function catalog (50 categories; return fields that feed other
functions' parameters) goes through the project's candidate generation, a scripted fake
judge (named as such: it labels pairs by field overlap, no LLM), random walks and
Merge/Insert/Split. Printed: median seconds per step over several runs, the number of LLM
calls graph building would make (one per function) against one per candidate pair, and
the speed-up of the indexed candidate generation over a naive all-pairs loop measured on
a sample of sources in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from magnet_dagster.graph.candidates import _field_tokens, candidate_pairs
from magnet_dagster.graph.function_graph import build_graph
from magnet_dagster.graph.paths import initial_path, insert, merge, nested_index, random_walk, split
from magnet_dagster.tools.spec import FunctionSpec

NOUNS = ["order", "user", "invoice", "ticket", "file", "flight", "account", "message", "report", "device",
         "payment", "booking", "product", "event", "note", "task", "album", "track", "city", "team"]
TYPES = ["string", "integer", "number", "boolean"]


def generated_catalog(n: int, categories: int, seed: int) -> list[FunctionSpec]:
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        noun = rng.choice(NOUNS)
        params = {f"{rng.choice(NOUNS)}_{rng.choice(['id', 'name', 'count', 'date'])}": {"type": rng.choice(TYPES)}
                  for _ in range(rng.randint(1, 4))}
        returns = {f"{noun}_{rng.choice(['id', 'name', 'count', 'date', 'status'])}": {"type": rng.choice(TYPES)}
                   for _ in range(rng.randint(1, 3))}
        specs.append(FunctionSpec(
            name=f"f{i}_{noun}", description=f"Work with a {noun}.",
            parameters={"type": "object", "properties": params, "required": list(params)[:1]},
            returns={"type": "object", "properties": returns}, category=f"cat{i % categories}"))
    return specs


def naive_candidates(specs: list[FunctionSpec], sources: list[FunctionSpec], k: int) -> dict[str, list[str]]:
    """The all-pairs loop the index avoids (baseline, run on a sample of sources)."""
    params = {s.name: _field_tokens(s.parameters) for s in specs}
    out = {}
    for src in sources:
        ret = _field_tokens(src.returns)
        scored = sorted(((sum(w * params[t.name].get(tok, 0) for tok, w in ret.items()), t.name)
                         for t in specs if t.name != src.name), reverse=True)
        out[src.name] = [name for _, name in scored[:k]]
    return out


def fake_judge(specs: dict[str, FunctionSpec], candidates: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Scripted fake judge (no LLM): a pair with a positive overlap score is a `full` edge."""
    return [{"source": c.source, "target": c.target, "relation": "full" if c.score > 0 else "none",
             "edge_id": f"{c.source}>{c.target}"} for cs in candidates.values() for c in cs]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_once(specs: list[FunctionSpec], k: int, steps: int, seed: int) -> dict[str, Any]:
    by_name = {s.name: s for s in specs}
    t_cand, candidates = _timed(lambda: candidate_pairs(specs, k=k))
    t_judge, edges = _timed(lambda: fake_judge(by_name, candidates))
    t_graph, graph = _timed(lambda: build_graph(by_name, edges))
    required = {s.name: s.required for s in specs}
    nested = nested_index((e["source"], e["target"]) for e in edges if e["relation"] == "full")

    def walks_and_ops() -> int:
        n = 0
        for i, start in enumerate(sorted(graph.nodes)):
            rng = random.Random(f"{seed}:{i}")
            path = merge(initial_path(random_walk(graph, start, steps, rng)), 0.3, rng)
            path = split(insert(path, nested, 0.3, rng), 0.2, rng, required)
            n += len(path.turns)
        return n

    t_paths, turns = _timed(walks_and_ops)
    return {"candidates_s": t_cand, "fake_judge_s": t_judge, "graph_s": t_graph, "walks_ops_s": t_paths,
            "pairs": sum(len(c) for c in candidates.values()), "edges": graph.number_of_edges(), "turns": turns}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.graph_building", description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=5000)
    parser.add_argument("--categories", type=int, default=50)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-sample", type=int, default=100)
    args = parser.parse_args(argv)
    specs = generated_catalog(args.functions, args.categories, seed=0)
    runs = [run_once(specs, args.k, args.steps, seed=r) for r in range(args.repeats)]
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    sample = specs[: args.naive_sample]
    t_naive = statistics.median(_timed(lambda: naive_candidates(specs, sample, args.k))[0] for _ in range(args.repeats))
    naive_full = t_naive * len(specs) / len(sample)
    print(f"graph building, {args.functions} generated functions in {args.categories} categories, k={args.k}, "
          f"S={args.steps}; medians of {args.repeats} runs")
    print(f"  candidate generation (indexed)     {med['candidates_s']:8.2f} s   {med['pairs']:.0f} candidate pairs")
    print(f"  all-pairs baseline (extrapolated)  {naive_full:8.2f} s   from {len(sample)} sources; "
          f"indexed is {naive_full / med['candidates_s']:.1f}x faster")
    print(f"  scripted fake judge                {med['fake_judge_s']:8.2f} s   {med['edges']:.0f} walkable edges")
    print(f"  graph (networkx)                   {med['graph_s']:8.2f} s")
    print(f"  walks + Merge/Insert/Split         {med['walks_ops_s']:8.2f} s   {med['turns']:.0f} turns")
    print(f"  LLM calls for judging: {args.functions} (one per function, all its candidates in one prompt) "
          f"vs {med['pairs']:.0f} one per pair: {med['pairs'] / args.functions:.1f}x fewer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
