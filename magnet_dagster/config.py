"""Where things live, from the environment (names fixed by DESIGN.md)."""

from __future__ import annotations

import os
from pathlib import Path


def magnet_home() -> Path:
    return Path(os.environ.get("MAGNET_HOME", ".magnet")).resolve()


def lineage_db_path() -> Path:
    return magnet_home() / "lineage.duckdb"


def exports_dir(tool_set: str) -> Path:
    return magnet_home() / "exports" / tool_set


def tool_sets_dir() -> Path:
    return Path(os.environ.get("MAGNET_TOOL_SETS_DIR", "tool_sets")).resolve()
