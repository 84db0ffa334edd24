"""Stage 3, `signature_paths`: random walks over the graph, then Merge, Insert and Split.

Writes `paths` (walk, edges walked, turns after the operations, operations applied, shape,
and the nested-call judge's LLM calls). Besides the multi-turn walks, single-turn examples
(single, parallel, multiple, irrelevance) in the tool set's `mix`. Seeded: a rerun gives
the same paths. The nested-call judge's requests are independent, so batch mode sends them
as one Vertex batch job first.
"""


import asyncio
import random
from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import md_table, options_for, run_with_llm, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.graph.function_graph import build_graph
from magnet_dagster.graph.judge import nested_request, parse_nested
from magnet_dagster.graph.paths import (
    initial_path, insert, merge, nested_index, operation_mix, random_walk, shape_counts, single_turn_paths, split,
)
from magnet_dagster.graph.paths import SignaturePath
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.spec import FunctionSpec, stable_id

EDGES_WITH_NAMES = """
SELECT e.edge_id, e.relation, e.reason, s.name AS source, t.name AS target
FROM graph_edges e
JOIN functions s ON s.tool_set = e.tool_set AND s.function_id = e.source_id
JOIN functions t ON t.tool_set = e.tool_set AND t.function_id = e.target_id
WHERE e.tool_set = ?
ORDER BY e.edge_id
"""


def load_specs(store: LineageStore, key: str) -> dict[str, FunctionSpec]:
    return {r["name"]: FunctionSpec.from_row(r) for r in store.rows("functions", key, "name")}


def path_row(key: str, run_id: str, path_id: str, path: SignaturePath, specs: dict[str, FunctionSpec],
             edge_ids: list[str], llm_call_ids: list[str]) -> dict:
    return {"path_id": path_id, "tool_set": key, "run_id": run_id,
            "walk": [specs[f].function_id(key) for f in path.walk], "edge_ids": edge_ids,
            "turns": [t.as_dict() for t in path.turns], "operations": list(path.operations),
            "shape": path.shape, "llm_call_ids": llm_call_ids}


@dg.asset(partitions_def=tool_sets, group_name="paths", deps=["function_graph"], kinds={"duckdb"},
          pool="teacher")
def signature_paths(context: dg.AssetExecutionContext, lineage: LineageStoreResource,
                    teacher: LLMResource) -> dg.MaterializeResult:
    """One signature path per walk: turns of functions, with the operations that shaped them."""
    key = context.partition_key
    store = lineage.get()
    options = options_for(store, key)
    specs = load_specs(store, key)
    edges = store.query(EDGES_WITH_NAMES, [key])
    graph = build_graph(specs, edges)
    walks = []
    for n, start in enumerate(sorted(graph.nodes) if options.mix.get("multi_turn", 0.0) > 0 else ()):
        for w in range(options.walks_per_node):
            rng = random.Random(f"{options.seed}:{start}:{w}")
            walks.append(random_walk(graph, start, options.walk_steps, rng))
    merged = [merge(initial_path(walk), options.merge_p, random.Random(f"{options.seed}:merge:{i}"))
              for i, walk in enumerate(walks)]
    # The nested-call judge runs only where Insert could use it: data edges out of a turn's
    # last function, to a function the path does not use yet.
    pairs = sorted({
        (turn.functions[-1], t)
        for path in merged for turn in path.turns
        for t in graph.successors(turn.functions[-1])
        if graph.edges[turn.functions[-1], t]["relation"] in ("full", "partial") and t not in path.functions
    })

    requests = [nested_request(specs[s], specs[t]) for s, t in pairs]
    batch_meta: dict[str, int] = {}

    async def judge(client: LLMClient) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
        batch_meta.update(await teacher.prefetch(client, requests))
        replies = await asyncio.gather(*(client.chat(r) for r in requests))
        nested = {p for p, r in zip(pairs, replies) if r.ok and parse_nested(r.json())}
        return nested, {p: r.call_id for p, r in zip(pairs, replies)}

    (nested, judge_ids), llm_meta = run_with_llm(context, teacher.client(store, context), judge,
                                                 options.max_llm_failure_rate)
    required = {n: s.required for n, s in specs.items()}
    nested_targets = nested_index(nested)
    rows, paths = [], []
    for i, (walk, path) in enumerate(zip(walks, merged)):
        path = insert(path, nested_targets, options.insert_p, random.Random(f"{options.seed}:insert:{i}"))
        path = split(path, options.split_p, random.Random(f"{options.seed}:split:{i}"), required)
        paths.append(path)
        edge_ids = [graph.edges[a, b]["edge_id"] for a, b in zip(walk, walk[1:])]
        rows.append(path_row(key, context.run.run_id, stable_id(key, i, walk), path, specs, edge_ids,
                             [judge_ids[p] for t in path.turns for p in t.nested if p in judge_ids]))
    counts = shape_counts(options.mix, len(paths), len(specs))
    for i, path in enumerate(single_turn_paths(counts, required, random.Random(f"{options.seed}:shapes"))):
        paths.append(path)
        rows.append(path_row(key, context.run.run_id, stable_id(key, path.shape, i, path.walk), path, specs, [], []))
    store.replace_partition(key, {"paths": rows})
    lengths = Counter(len(p.turns) for p in paths)
    context.log.info(f"{key}: {len(paths)} paths from {graph.number_of_nodes()} start nodes; "
                     f"{len(nested)}/{len(pairs)} pairs judged nested")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "paths": len(rows),
        "nested_pairs": len(nested),
        "judged_pairs": len(pairs),
        "operation_mix": dg.MetadataValue.json(operation_mix(paths)),
        "shape_mix": dg.MetadataValue.json(dict(Counter(p.shape for p in paths))),
        "turns_per_path": dg.MetadataValue.json(dict(sorted(lengths.items()))),
        "preview": dg.MetadataValue.md(md_table([{
            "path_id": r["path_id"], "shape": r["shape"], "operations": ", ".join(r["operations"]),
            "turns": " | ".join("+".join(t["functions"]) or t["kind"] for t in r["turns"])} for r in rows])),
        **llm_meta,
        **batch_meta,
    })
