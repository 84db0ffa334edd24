"""Where things live and how far the system trusts its inputs, from the environment.

Names are fixed by DESIGN.md (`MAGNET_HOME`, `MAGNET_TOOL_SETS_DIR`) and the README's table
of limits (`MAGNET_LLM_TIMEOUT_S`, ...). A limit that is set but unreadable is an error that
names the variable, never a silent default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


def magnet_home() -> Path:
    return Path(os.environ.get("MAGNET_HOME", ".magnet")).resolve()


def lineage_db_path() -> Path:
    return magnet_home() / "lineage.duckdb"


def exports_dir(tool_set: str) -> Path:
    return magnet_home() / "exports" / tool_set


def tool_sets_dir() -> Path:
    return Path(os.environ.get("MAGNET_TOOL_SETS_DIR", "tool_sets")).resolve()


@dataclass(frozen=True)
class Limits:
    """Bounds on what a model or a tool file may hand the system.

    Each field is read from `MAGNET_<FIELD NAME IN CAPITALS>` (e.g. `MAGNET_MAX_REPLY_CHARS`).
    """

    #: seconds one LLM request may take before it is retried (then recorded as an error)
    llm_timeout_s: float = 120.0
    #: characters of one model reply (content plus tool-call arguments); longer is an error outcome
    max_reply_chars: int = 100_000
    #: nesting depth of JSON in one model reply; deeper is an error outcome
    max_reply_depth: int = 64
    #: nesting depth (dicts and lists) of a function's `parameters` / `returns` schema
    max_schema_depth: int = 32
    #: characters of a function's or parameter's description
    max_description_chars: int = 8_000

    @classmethod
    def from_env(cls) -> Limits:
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"MAGNET_{f.name.upper()}"
            raw = os.environ.get(name)
            if raw is None or not raw.strip():
                continue
            kind = float if f.type in (float, "float") else int
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected a positive {kind.__name__}") from None
            if value <= 0:
                raise ValueError(f"{name}={raw!r}: expected a positive {kind.__name__}")
            values[f.name] = value
        return cls(**values)


def limits() -> Limits:
    return Limits.from_env()
