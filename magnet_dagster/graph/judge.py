"""The teacher as a judge: edge relations between functions, and nested calls.

Prompts and structured-output schemas are built here and replies parsed here, so the
asset only sends requests. One request judges all candidates of one source function,
so graph building costs about one LLM call per function, not one per pair. The same
request asks, for each data edge, which output field of the source feeds which parameter
of the candidate (the edge's `mapping`) and whether an assistant would call the candidate
on the source's output unasked (`nested`, what Insert needs). The verdicts carry no
free-text reason: on the embedded model the reasons were half of the graph's decoded tokens,
and the mapping says what the edge passes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.graph.candidates import candidate_pairs
from magnet_dagster.graph.function_graph import DATA_RELATIONS, feeding_sources
from magnet_dagster.llm.client import LLMClient, LLMRequest
from magnet_dagster.tools.spec import FunctionSpec, stable_id

#: Answers a bulk step's independent requests ahead of the online loop (batch mode); returns counts.
Prefetch = Callable[[Sequence[LLMRequest]], Awaitable[dict[str, int]]]

RELATIONS = ("full", "partial", "prerequisite", "none")

# Instructions first, the functions last: the server evaluates the shared part once per slot.
EDGE_PROMPT = """You judge how API functions connect. For each candidate function, decide the
relation from the source function to the candidate:
- "full": the source's output gives all required inputs of the candidate
- "partial": the source's output gives some inputs of the candidate
- "prerequisite": the source must run before the candidate (e.g. log in, create), without passing data
- "none": no useful relation
Answer with a JSON object keyed by candidate name, each with "relation"; "mapping": for "full"
or "partial", which output field of the source gives each candidate parameter it feeds, as
{{"parameter": "output field"}} ("$" for the whole output), otherwise {{}}; and "nested": true
when an assistant would call the candidate right after the source, taking its arguments from the
source's output, without the user asking for the candidate.
Source function:
{source}
Candidates:
{candidates}"""


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


#: structured-output budget: the object, then per candidate its verdict, then per parameter a mapping entry
EDGE_TOKENS_BASE, EDGE_TOKENS_PER_CANDIDATE, EDGE_TOKENS_PER_PARAMETER = 32, 40, 12


def mapping_schema(source: FunctionSpec, candidate: FunctionSpec) -> dict[str, Any]:
    """`{candidate parameter: source output field}`: keys limited to the candidate's parameters
    that some output field of the source can feed, each value to those fields (top-level
    fields of the source's `returns` whose type fits; `$`, the whole output, when it has none)."""
    properties = {}
    for name, schema in candidate.properties.items():
        sources = feeding_sources(source.returns, schema)
        if sources:
            properties[name] = {"type": "string", "enum": sources}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def edge_request(source: FunctionSpec, candidates: list[FunctionSpec]) -> LLMRequest:
    """One request judging all of `source`'s candidates: relation, parameter mapping and nested each."""
    mappings = {c.name: mapping_schema(source, c) for c in candidates}
    schema = {
        "type": "object",
        "properties": {
            name: {
                "type": "object",
                "properties": {
                    "relation": {"type": "string", "enum": list(RELATIONS)},
                    "mapping": mapping,
                    "nested": {"type": "boolean"},
                },
                "required": ["relation", "mapping", "nested"],
            }
            for name, mapping in mappings.items()
        },
        "required": list(mappings),
    }
    budget = EDGE_TOKENS_BASE + sum(
        EDGE_TOKENS_PER_CANDIDATE + EDGE_TOKENS_PER_PARAMETER * len(m["properties"]) for m in mappings.values()
    )
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
        max_tokens=budget,
    )


@dataclass(frozen=True)
class EdgeVerdict:
    source: str
    target: str
    relation: str
    #: {target parameter: source output field}; empty unless the relation passes data
    mapping: dict[str, str] = field(default_factory=dict)
    #: an assistant would call the target on the source's output unasked (data relations only)
    nested: bool = False


def parse_mapping(value: Any, source: FunctionSpec, candidate: FunctionSpec) -> dict[str, str]:
    """The entries of a judged mapping that name a parameter of `candidate` and an output field of
    `source` that can feed it (as `mapping_schema` offers them); the rest are dropped."""
    if not isinstance(value, dict):
        return {}
    params = candidate.properties
    out = {}
    for key, field_name in value.items():
        if (
            isinstance(key, str)
            and key in params
            and isinstance(field_name, str)
            and field_name.strip() in feeding_sources(source.returns, params[key])
        ):
            out[key] = field_name.strip()
    return out


def parse_edges(source: FunctionSpec, candidates: Sequence[FunctionSpec], reply: Any) -> list[EdgeVerdict]:
    """Verdicts for the candidates the reply covers with a known relation; the rest are dropped.

    A `full` / `partial` verdict keeps the mapping entries whose key is a parameter of the
    candidate and whose value is a top-level output field of the source (`$` when the output
    has no fields) of a fitting type; other relations carry no mapping and are never nested.
    """
    if not isinstance(reply, dict):
        return []
    out = []
    for candidate in candidates:
        entry = reply.get(candidate.name)
        if isinstance(entry, dict) and entry.get("relation") in RELATIONS:
            relation = entry["relation"]
            data = relation in DATA_RELATIONS
            mapping = parse_mapping(entry.get("mapping"), source, candidate) if data else {}
            nested = data and entry.get("nested") is True
            out.append(EdgeVerdict(source.name, candidate.name, relation, mapping, nested))
    return out


@dataclass
class GraphJudgement:
    """Every judged pair as a `graph_edges` row (plus `source` / `target` names for the graph);
    `mapping` is `{target parameter: source output field}` (`{}` for none / prerequisite)."""

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
                "reason": None,
                "mapping": v.mapping,
                "nested": v.nested,
                "score": scores[v.target],
                "llm_call_id": reply.call_id,
            }
            for v in parse_edges(
                specs[source], [specs[c.target] for c in candidates[source]], reply.json() if reply.ok else None
            )
        ]

    edges = [e for found in await asyncio.gather(*(one(s) for s in candidates)) for e in found]
    return GraphJudgement(edges, sum(len(cs) for cs in candidates.values()), batch)
