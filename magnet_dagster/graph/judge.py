"""The teacher as a judge: edge relations between functions, and nested calls.

Prompts and structured-output schemas are built here and replies parsed here, so the
asset only sends requests. One request judges all candidates of one source function,
so graph building costs about one LLM call per function, not one per pair.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from magnet_dagster.llm.client import LLMRequest
from magnet_dagster.tools.spec import FunctionSpec

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
    return json.dumps({
        "name": spec.name,
        "description": spec.description[:300],
        "parameters": {k: v.get("type") for k, v in spec.properties.items()},
        "required": spec.required,
        "returns": {k: (v or {}).get("type") for k, v in ((spec.returns or {}).get("properties") or {}).items()},
    })


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
        messages=[{"role": "user", "content": EDGE_PROMPT.format(
            source=describe(source), candidates="\n".join(describe(c) for c in candidates))}],
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
        messages=[{"role": "user", "content": NESTED_PROMPT.format(
            source=describe(source), target=describe(target))}],
        response_schema=schema,
        max_tokens=96,
    )


def parse_nested(reply: Any) -> bool:
    return isinstance(reply, dict) and reply.get("nested") is True
