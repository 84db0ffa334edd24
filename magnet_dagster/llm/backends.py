"""Choosing a backend from configuration: `local`, `openai`, `vllm` (and `gemini` for teachers).

Settings come from the environment names DESIGN.md fixes (`MAGNET_TEACHER`,
`MAGNET_TEACHER_BASE_URL`, `MAGNET_TEACHER_MODEL`, `MAGNET_STUDENT`, ...); API keys are
read from the environment and never stored. `MAGNET_TEACHER_BATCH=vertex` opts the
Gemini teacher's bulk steps into Vertex batch prediction (`batch_mode`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from magnet_dagster.llm.batch_mode import BatchRunner
from magnet_dagster.llm.client import Backend
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.llm.vertex_batch import VertexBatchRunner

KINDS = {"teacher": ("local", "openai", "gemini"), "student": ("local", "openai", "vllm")}
#: Batch modes per role, and the backend kind each needs.
BATCH_MODES = {"teacher": {"vertex": "gemini"}, "student": {}}


@dataclass(frozen=True)
class BackendSettings:
    role: str
    kind: str
    base_url: str | None
    model: str | None
    api_key_env: str = "OPENAI_API_KEY"
    batch: str | None = None

    @classmethod
    def from_env(cls, role: str) -> BackendSettings:
        prefix = f"MAGNET_{role.upper()}"
        kind = os.environ.get(prefix, "local").lower()
        if kind not in KINDS[role]:
            raise ValueError(f"{prefix}={kind!r}: choose one of {KINDS[role]}")
        return cls(
            role=role,
            kind=kind,
            base_url=os.environ.get(f"{prefix}_BASE_URL"),
            model=os.environ.get(f"{prefix}_MODEL"),
            batch=batch_mode_from_env(role, kind),
        )


def batch_mode_from_env(role: str, kind: str) -> str | None:
    """`MAGNET_<ROLE>_BATCH`, off unless set; a mode the backend cannot serve is an error, not a silent no."""
    name = f"MAGNET_{role.upper()}_BATCH"
    mode = os.environ.get(name, "").strip().lower()
    if mode in ("", "off"):
        return None
    modes = BATCH_MODES[role]
    if mode not in modes:
        raise ValueError(f"{name}={mode!r}: choose one of {('off', *modes)}")
    if kind != modes[mode]:
        raise ValueError(f"{name}={mode} needs MAGNET_{role.upper()}={modes[mode]}, not {kind!r}")
    return mode


def make_batch_runner(settings: BackendSettings) -> BatchRunner | None:
    """The runner for the settings' batch mode, or None when bulk steps stay online."""
    if settings.batch == "vertex":
        return VertexBatchRunner.from_env()
    return None


def make_backend(settings: BackendSettings, server_url: str | None = None, server_model: str | None = None) -> Backend:
    """Build the backend; `server_*` describe a server the resource started (llama.cpp or vLLM)."""
    if settings.kind == "local":
        if not server_url or not server_model:
            raise ValueError("the local backend needs a running llama.cpp server")
        return OpenAICompatibleBackend(
            base_url=server_url,
            model=server_model,
            name="local",
            structured_output="llama_cpp",
            native_tools=False,
        )
    if settings.kind in ("openai", "vllm"):
        base_url = settings.base_url or server_url
        if not base_url or not settings.model:
            needs = "_MODEL (and _BASE_URL, or for vllm a model to serve)"
            raise ValueError(
                f"MAGNET_{settings.role.upper()}={settings.kind} needs MAGNET_{settings.role.upper()}{needs}"
            )
        return OpenAICompatibleBackend(
            base_url=base_url,
            model=settings.model,
            name=settings.kind,
            api_key=os.environ.get(settings.api_key_env, "not-needed"),
            structured_output="json_schema",
            native_tools=True,
        )
    if settings.kind == "gemini":
        from magnet_dagster.llm.gemini_backend import GeminiBackend

        return GeminiBackend.from_env(model=settings.model)
    raise ValueError(f"unknown backend kind {settings.kind!r}")
