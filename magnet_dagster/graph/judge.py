"""The teacher as a judge: edge relations between functions, and nested calls.

Prompts and structured-output schemas are built here and replies parsed here, so the
asset only sends requests. One request judges all candidates of one source function,
so graph building costs about one LLM call per function, not one per pair.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.graph.candidates import candidate_pairs
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.tools.spec import FunctionSpec, stable_id

#: Answers a bulk step's independent requests ahead of the online loop (batch mode); returns counts.
Prefetch = Callable[[Sequence[LLMRequest]], Awaitable[dict[str, int]]]

RELATIONS = ("full", "partial", "prerequisite", "none")

EDGE_PROMPT = """You judge how API functions connect. Source function:
{source}

For each candidate below, decide the relation from the source to the candidate:
- "full": the source's output gives all required inputs of the candidate
- "partial": the source's output gives some inputs of the candidate
- "prerequisite": the source must run before the candidate (e.g. log in, create), without passing data
- "none": no useful relation
Candidates:
{candidates}

Answer with a JSON object keyed by candidate name, each with "relation" and a short "reason"."""

NESTED_PROMPT = """Function A:
{source}
Function B:
{target}
Is it natural for an assistant to call B right after A, taking B's arguments from A's output,
without the user asking for B? Answer with JSON {{"nested": true|false, "reason": "..."}}."""


def describe(spec: FunctionSpec) -> str:
    return json.dumps(
        {
            "name": spec.name,
            "description": spec.description[:300],
            "parameters": {k: v.get("type") for k, v in spec.properties.items()},
            "required": spec.required,
            "returns": {k: (v or {}).get("type") for k, v in ((spec.returns or {}).get("properties") or {}).items()},
        }
    )


def edge_request(source: FunctionSpec, candidates: list[FunctionSpec]) -> LLMRequest:
    item = {
        "type": "object",
        "properties": {
            "relation": {"type": "string", "enum": list(RELATIONS)},
            "reason": {"type": "string", "maxLength": 160},
        },
        "required": ["relation", "reason"],
    }
    schema = {
        "type": "object",
        "properties": {c.name: item for c in candidates},
        "required": [c.name for c in candidates],
    }
    return LLMRequest(
        messages=[
            {
                "role": "user",
                "content": EDGE_PROMPT.format(
                    source=describe(source), candidates="\n".join(describe(c) for c in candidates)
                ),
            }
        ],
        response_schema=schema,
        max_tokens=64 + 64 * len(candidates),
    )


@dataclass(frozen=True)
class EdgeVerdict:
    source: str
    target: str
    relation: str
    reason: str


def parse_edges(source: str, candidates: list[str], reply: Any) -> list[EdgeVerdict]:
    """Verdicts for the candidates the reply covers with a known relation; the rest are dropped."""
    if not isinstance(reply, dict):
        return []
    out = []
    for name in candidates:
        entry = reply.get(name)
        if isinstance(entry, dict) and entry.get("relation") in RELATIONS:
            out.append(EdgeVerdict(source, name, entry["relation"], str(entry.get("reason", ""))[:300]))
    return out


def nested_request(source: FunctionSpec, target: FunctionSpec) -> LLMRequest:
    schema = {
        "type": "object",
        "properties": {"nested": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 160}},
        "required": ["nested", "reason"],
    }
    return LLMRequest(
        messages=[{"role": "user", "content": NESTED_PROMPT.format(source=describe(source), target=describe(target))}],
        response_schema=schema,
        max_tokens=96,
    )


def parse_nested(reply: Any) -> bool:
    return isinstance(reply, dict) and reply.get("nested") is True


@dataclass
class GraphJudgement:
    """Every judged pair as a `graph_edges` row (plus `source` / `target` names for the graph)."""

    edges: list[dict[str, Any]]
    candidate_pairs: int
    batch: dict[str, int] = field(default_factory=dict)


async def judge_graph(
    client: LLMClient,
    specs: dict[str, FunctionSpec],
    tool_set: str,
    run_id: str,
    k: int,
    prefetch: Prefetch | None = None,
    tick: Callable[[], None] | None = None,
) -> GraphJudgement:
    """Judge each function's k best candidates in one request; unparsed verdicts are simply absent."""
    candidates = {s: cs for s, cs in candidate_pairs(list(specs.values()), k=k).items() if cs}
    requests = {s: edge_request(specs[s], [specs[c.target] for c in cs]) for s, cs in candidates.items()}
    batch = await prefetch(list(requests.values())) if prefetch else {}

    async def one(source: str) -> list[dict[str, Any]]:
        reply = await client.chat(requests[source])
        if tick:
            tick()
        scores = {c.target: c.score for c in candidates[source]}
        return [
            {
                "edge_id": stable_id(tool_set, v.source, v.target),
                "tool_set": tool_set,
                "run_id": run_id,
                "source_id": specs[v.source].function_id(tool_set),
                "target_id": specs[v.target].function_id(tool_set),
                "source": v.source,
                "target": v.target,
                "relation": v.relation,
                "reason": v.reason,
                "score": scores[v.target],
                "llm_call_id": reply.call_id,
            }
            for v in parse_edges(source, list(scores), reply.json() if reply.ok else None)
        ]

    edges = [e for found in await asyncio.gather(*(one(s) for s in candidates)) for e in found]
    return GraphJudgement(edges, sum(len(cs) for cs in candidates.values()), batch)


@dataclass
class NestedJudgement:
    """Which (source, target) pairs the teacher judged nested, and the call that judged each pair."""

    nested: set[tuple[str, str]]
    call_ids: dict[tuple[str, str], str]
    batch: dict[str, int] = field(default_factory=dict)


async def judge_nested(
    client: LLMClient, specs: dict[str, FunctionSpec], pairs: list[tuple[str, str]], prefetch: Prefetch | None = None
) -> NestedJudgement:
    requests = [nested_request(specs[s], specs[t]) for s, t in pairs]
    batch = await prefetch(requests) if prefetch else {}
    replies = await asyncio.gather(*(client.chat(r) for r in requests))
    nested = {p for p, r in zip(pairs, replies) if r.ok and parse_nested(r.json())}
    return NestedJudgement(nested, {p: r.call_id for p, r in zip(pairs, replies)}, batch)
