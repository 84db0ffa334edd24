"""Candidate edges: which functions might consume what another produces.

An inverted index from parameter tokens (names, types, description words) to functions
scores every source's `returns` against all targets at once, so a 5,000-function catalog
never needs an all-pairs loop. Targets come from the source's own category/tool first,
topped up from the whole tool set when the category is small.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter

from magnet_dagster.tools.spec import FunctionSpec

_WORD = re.compile(r"[a-z][a-z0-9]+")
_STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "to",
        "for",
        "and",
        "or",
        "in",
        "on",
        "is",
        "be",
        "by",
        "with",
        "from",
        "this",
        "that",
        "it",
        "its",
        "as",
        "at",
        "value",
        "values",
        "number",
        "string",
        "list",
        "dict",
        "integer",
        "float",
        "boolean",
        "object",
    ]
)


def _words(text: str | None) -> set[str]:
    return {w for w in _WORD.findall((text or "").lower()) if w not in _STOP and len(w) > 2}


def _field_tokens(schema: dict | None) -> Counter[str]:
    """Weighted tokens of a schema's top-level fields: name 3, name parts 2, type and words 1."""
    tokens: Counter[str] = Counter()
    if not isinstance(schema, dict):
        return tokens
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        schema = schema["items"]  # a list of records feeds its records' fields
    for name, sub in (schema.get("properties") or {}).items():
        sub = sub if isinstance(sub, dict) else {}
        tokens[f"name:{name.lower()}"] += 3
        for part in name.lower().split("_"):
            if len(part) > 2:
                tokens[f"word:{part}"] += 2
        if isinstance(sub.get("type"), str):
            tokens[f"type:{sub['type']}"] += 1
        for word in _words(sub.get("description")):
            tokens[f"word:{word}"] += 1
    return tokens


@dataclass(frozen=True)
class Candidate:
    source: str
    target: str
    score: float


def candidate_pairs(specs: list[FunctionSpec], k: int = 30) -> dict[str, list[Candidate]]:
    """Up to `k` ranked candidate targets per source function.

    No step scans or sorts the whole catalog per source: where a category alone fills its
    members' `k`, a source's scores come from that category's postings and the unscored rest
    in name order; only a source in a small category reads the whole index (its shared tokens'
    postings, common tokens left out). Same result as ranking every candidate, at a cost that
    follows category sizes rather than the catalog's square.
    """
    by_group: dict[str | None, list[str]] = defaultdict(list)
    index: dict[str, list[tuple[str, int]]] = defaultdict(list)
    group_of: dict[str, str | None] = {}
    for spec in specs:
        group = spec.category or spec.tool
        group_of[spec.name] = group
        by_group[group].append(spec.name)
        for token, weight in _field_tokens(spec.parameters).items():
            index[token].append((spec.name, weight))
    # Tokens most parameters share (a bare type, a generic word) say little and would make
    # every lookup a near-scan of the catalog: like stop words, they are left out.
    common = {tok for tok, posts in index.items() if len(posts) > max(50, len(specs) // 20)}
    # A category with more than k members fills every member's k from itself: its own postings
    # give the same scores for its members as the whole index, without touching the rest.
    group_index: dict[str | None, dict[str, list[tuple[str, int]]]] = {}
    for token, posts in index.items():
        if token in common:
            continue
        for target, weight in posts:
            group = group_of[target]
            if len(by_group[group]) > k:
                group_index.setdefault(group, defaultdict(list))[token].append((target, weight))
    by_name = {g: sorted(names) for g, names in by_group.items()}
    everyone = [s.name for s in specs]
    result: dict[str, list[Candidate]] = {}
    for spec in specs:
        group = group_of[spec.name]
        fills_itself = len(by_group[group]) > k
        postings = group_index.get(group, {}) if fills_itself else index
        scores: Counter[str] = Counter()
        for token, weight in _field_tokens(spec.returns).items():
            if token in common:
                continue
            for target, target_weight in postings.get(token, ()):
                if target != spec.name:
                    scores[target] += weight * target_weight
        # same category first: scored members by score then name, then the unscored ones by name
        scored_same = [n for n in scores if group_of[n] == group]
        chosen = heapq.nsmallest(k, scored_same, key=lambda n: (-scores[n], n))
        if len(chosen) < k:
            chosen += islice((n for n in by_name[group] if n not in scores and n != spec.name), k - len(chosen))
        if not fills_itself and len(chosen) < k:
            same = len(by_group[group]) - 1
            taken = set(chosen) | {spec.name}
            best = heapq.nlargest(k - len(chosen) + len(taken), scores.items(), key=itemgetter(1))
            chosen += [n for n, _ in best if n not in taken][: k - len(chosen)]
            if len(chosen) < k and same < k // 3:
                taken = set(chosen) | {spec.name}
                chosen += islice((n for n in everyone if n not in taken), k - len(chosen))
        result[spec.name] = [Candidate(spec.name, n, float(scores[n])) for n in chosen]
    return result
