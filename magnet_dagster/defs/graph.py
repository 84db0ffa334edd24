"""Stage 2, `function_graph`: candidate pairs, judged by the teacher, as a directed graph.

Writes `graph_edges` (every verdict, `none` included, with reason, candidate score and
the judging LLM call). One teacher call per function judges all its candidates; the calls
are independent, so in batch mode (`MAGNET_TEACHER_BATCH`) one batch job answers them first.
"""


import asyncio
from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import Progress, md_table, options_for, run_with_llm, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.graph.candidates import candidate_pairs
from magnet_dagster.graph.function_graph import build_graph, graph_stats, mermaid
from magnet_dagster.graph.judge import edge_request, parse_edges
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.tools.spec import FunctionSpec, stable_id


@dg.asset(partitions_def=tool_sets, group_name="graph", deps=["function_catalog"], kinds={"duckdb"},
          pool="teacher")
def function_graph(context: dg.AssetExecutionContext, lineage: LineageStoreResource,
                   teacher: LLMResource) -> dg.MaterializeResult:
    """Edges f_i -> f_j where f_i's output can feed f_j (full / partial / prerequisite)."""
    key = context.partition_key
    store = lineage.get()
    options = options_for(store, key)
    specs = {r["name"]: FunctionSpec.from_row(r) for r in store.rows("functions", key, "name")}
    candidates = candidate_pairs(list(specs.values()), k=options.candidates_per_function)
    progress = Progress(context, len(candidates), "functions judged")
    requests = {s: edge_request(specs[s], [specs[c.target] for c in cs]) for s, cs in candidates.items() if cs}
    batch_meta: dict[str, int] = {}

    async def judge(client: LLMClient) -> list[dict]:
        batch_meta.update(await teacher.prefetch(client, list(requests.values())))

        async def one(source: str) -> list[dict]:
            targets = [c.target for c in candidates[source]]
            if not targets:
                return []
            reply = await client.chat(requests[source])
            progress.tick()
            scores = {c.target: c.score for c in candidates[source]}
            return [{
                "edge_id": stable_id(key, v.source, v.target), "tool_set": key, "run_id": context.run.run_id,
                "source_id": specs[v.source].function_id(key), "target_id": specs[v.target].function_id(key),
                "source": v.source, "target": v.target, "relation": v.relation, "reason": v.reason,
                "score": scores[v.target], "llm_call_id": reply.call_id,
            } for v in parse_edges(source, targets, reply.json() if reply.ok else None)]
        return [e for edges in await asyncio.gather(*(one(s) for s in candidates)) for e in edges]

    edges, llm_meta = run_with_llm(context, teacher.client(store, context), judge, options.max_llm_failure_rate)
    store.replace_partition(key, {"graph_edges": [{k: v for k, v in e.items() if k not in ("source", "target")}
                                                  for e in edges]})
    graph = build_graph(specs, edges)
    stats = graph_stats(graph)
    n_pairs = sum(len(c) for c in candidates.values())
    context.log.info(f"{key}: {n_pairs} candidate pairs, {len(edges)} judged, {stats['edges']} walkable edges")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(edges),
        "candidate_pairs": n_pairs,
        "judged_pairs": len(edges),
        "unjudged_pairs": n_pairs - len(edges),
        "walkable_edges": stats["edges"],
        "verdicts": dg.MetadataValue.json(dict(Counter(e["relation"] for e in edges))),
        "stats": dg.MetadataValue.json(stats),
        "graph": dg.MetadataValue.md(f"```mermaid\n{mermaid(graph)}\n```"),
        "preview": dg.MetadataValue.md(md_table([{k: e[k] for k in ("source", "target", "relation", "reason")}
                                                 for e in edges])),
        **llm_meta,
        **batch_meta,
    })
