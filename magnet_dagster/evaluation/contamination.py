"""Contamination guard: synthesized data must not contain BFCL's multi-turn evaluation data.

For a tool set that shares functions with BFCL's executable classes, no synthesized user
query may reproduce a BFCL multi-turn question (exactly, after normalising, or through a
long shared run of words), and no generated starting state may equal an `initial_config`
BFCL evaluates with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from magnet_dagster.tools import bfcl
from magnet_dagster.tools.executors import conversation_seed

CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
SHINGLE = 10  # words: a run this long shared with a BFCL question is a copy, not a coincidence
_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _shingles(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def _canonical(state: Any) -> str:
    return json.dumps(state, sort_keys=True, default=sorted)


@dataclass(frozen=True)
class BfclEvaluationData:
    questions: frozenset[str]
    shingles: frozenset[tuple[str, ...]]
    states: dict[str, frozenset[str]]
    functions: frozenset[str]


@lru_cache(maxsize=1)
def bfcl_evaluation_data() -> BfclEvaluationData:
    data_dir = bfcl.package_dir() / "data"
    questions: set[str] = set()
    shingles: set[tuple[str, ...]] = set()
    states: dict[str, set[str]] = {}
    for category in CATEGORIES:
        path = data_dir / f"BFCL_v4_{category}.json"
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            for turn in entry.get("question", []):
                for message in turn:
                    words = _words(message.get("content") or "")
                    if words:
                        questions.add(" ".join(words))
                        shingles |= _shingles(words)
            for cls, config in (entry.get("initial_config") or {}).items():
                states.setdefault(cls, set()).add(_canonical(config))
    functions = {doc["name"] for cls in bfcl.class_files()[0] for _, doc in bfcl.func_docs(cls)}
    return BfclEvaluationData(
        frozenset(questions), frozenset(shingles), {k: frozenset(v) for k, v in states.items()}, frozenset(functions)
    )


def copied_queries(queries: Iterable[tuple[str, str]], data: BfclEvaluationData | None = None) -> list[dict[str, str]]:
    """(id, text) pairs whose text reproduces a BFCL multi-turn question."""
    data = data or bfcl_evaluation_data()
    found = []
    for item_id, text in queries:
        words = _words(text)
        if " ".join(words) in data.questions:
            found.append({"id": item_id, "why": "equals a BFCL multi-turn question", "text": text[:120]})
        elif _shingles(words) & data.shingles:
            found.append(
                {"id": item_id, "why": f"shares {SHINGLE}+ consecutive words with a BFCL question", "text": text[:120]}
            )
    return found


def copied_states(
    states: Iterable[tuple[str, str, Any]], data: BfclEvaluationData | None = None
) -> list[dict[str, str]]:
    """(id, class, state) triples whose state equals one of BFCL's initial configs for that class."""
    data = data or bfcl_evaluation_data()
    # An empty state is the class's own default, not a scenario anyone could copy.
    return [
        {"id": item_id, "why": f"{cls} state equals a BFCL initial_config"}
        for item_id, cls, state in states
        if state and _canonical(state) in data.states.get(cls, frozenset())
    ]


def shares_functions(function_names: Iterable[str], data: BfclEvaluationData | None = None) -> bool:
    data = data or bfcl_evaluation_data()
    return bool(set(function_names) & data.functions)


def partition_findings(
    function_names: list[str], turns: list[dict[str, Any]], executor: dict[str, Any]
) -> list[dict[str, str]] | None:
    """Copied BFCL questions and starting states in one tool set's turns; None when it shares no
    function with BFCL (nothing to check)."""
    if not shares_functions(function_names):
        return None
    findings = copied_queries((t["turn_id"], t["query"]) for t in turns)
    classes = (executor or {}).get("classes") or []
    paths = sorted({t["path_id"] for t in turns})
    findings += copied_states((p, cls, bfcl.initial_state(cls, conversation_seed(p))) for p in paths for cls in classes)
    return findings
