"""Deduplicated, leakage-free splits: assigned by path, never by turn."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitSettings:
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0


def dedup_key(messages: list[dict[str, Any]]) -> str:
    """Normalised user text plus the call signature (names and argument keys) of a conversation."""
    users = [" ".join((m.get("content") or "").lower().split()) for m in messages if m["role"] == "user"]
    calls = [
        (tc["function"]["name"], sorted(json.loads(tc["function"]["arguments"] or "{}")))
        for m in messages
        if m["role"] == "assistant"
        for tc in m.get("tool_calls") or []
    ]
    return hashlib.sha1(json.dumps([users, calls]).encode()).hexdigest()


def deduplicate(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    seen: set[str] = set()
    kept = []
    for row in sorted(rows, key=lambda r: r["trajectory_id"]):
        key = dedup_key(row["messages"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def assign_splits(path_ids: list[str], settings: SplitSettings) -> dict[str, str]:
    """Seeded assignment of whole paths to splits.

    With three or more paths, test and validation each get at least one, so evaluation
    always has something to replay.
    """
    ordered = sorted(set(path_ids))
    random.Random(settings.seed).shuffle(ordered)
    n = len(ordered)
    n_test = round(n * settings.fractions[2])
    n_val = round(n * settings.fractions[1])
    if n >= 3:
        n_test, n_val = max(n_test, 1), max(n_val, 1)
    elif n == 2:
        n_test, n_val = 1, 0
    else:
        n_test, n_val = 0, 0
    out = {}
    for i, pid in enumerate(ordered):
        out[pid] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return out


def leaked_paths(assignments: list[dict[str, Any]]) -> list[str]:
    """Paths that appear in more than one split (must be empty)."""
    seen: dict[str, set[str]] = {}
    for row in assignments:
        seen.setdefault(row["path_id"], set()).add(row["split"])
    return sorted(p for p, s in seen.items() if len(s) > 1)


@dataclass
class SplitAssignment:
    rows: list[dict[str, Any]]  # `splits` rows
    kept: list[dict[str, Any]]  # the trajectories left after dedup
    duplicates: int


def split_rows(
    trajectories: list[dict[str, Any]], settings: SplitSettings, tool_set: str, run_id: str
) -> SplitAssignment:
    """Dedup first, then split by path (never by turn)."""
    kept, duplicates = deduplicate(trajectories)
    assignment = assign_splits([t["path_id"] for t in kept], settings)
    rows = [
        {
            "tool_set": tool_set,
            "run_id": run_id,
            "trajectory_id": t["trajectory_id"],
            "path_id": t["path_id"],
            "split": assignment[t["path_id"]],
        }
        for t in kept
    ]
    return SplitAssignment(rows, kept, duplicates)
