"""Shared fixtures. Integration tests use the real llama.cpp server with the SmolLM2 GGUF."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import PostgresServer, postgres_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server (temp folder, loopback) for the session; skipped where not installed."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres.database()


@pytest.fixture
def magnet_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "magnet"
    monkeypatch.setenv("MAGNET_HOME", str(home))
    return home


@pytest.fixture
def tool_sets_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "tool_sets"
    d.mkdir()
    monkeypatch.setenv("MAGNET_TOOL_SETS_DIR", str(d))
    return d


def write_tiny_bfcl_tool_set(directory: Path, name: str, functions: list[str], seed: int = 1) -> Path:
    """A small executable tool set: a few of BFCL's MathAPI functions."""
    folder = directory / name
    folder.mkdir()
    (folder / "toolset.yaml").write_text(
        "bfcl_classes: [MathAPI]\n"
        f"bfcl_functions: [{', '.join(functions)}]\n"
        "options:\n  candidates_per_function: 4\n  walk_steps: 3\n  walks_per_node: 1\n"
        f"  max_attempts: 2\n  seed: {seed}\n"
    )
    return folder
