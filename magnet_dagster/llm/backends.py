"""Choosing a backend from configuration: `local`, `openai`, `vllm` (and `gemini` for teachers).

Settings come from the environment names DESIGN.md fixes (`MAGNET_TEACHER`,
`MAGNET_TEACHER_BASE_URL`, `MAGNET_TEACHER_MODEL`, `MAGNET_STUDENT`, ...); API keys are
read from the environment and never stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from magnet_dagster.llm.client import Backend
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend

KINDS = {"teacher": ("local", "openai", "gemini"), "student": ("local", "openai", "vllm")}


@dataclass(frozen=True)
class BackendSettings:
    role: str
    kind: str
    base_url: str | None
    model: str | None
    api_key_env: str = "OPENAI_API_KEY"

    @classmethod
    def from_env(cls, role: str) -> "BackendSettings":
        prefix = f"MAGNET_{role.upper()}"
        kind = os.environ.get(prefix, "local").lower()
        if kind not in KINDS[role]:
            raise ValueError(f"{prefix}={kind!r}: choose one of {KINDS[role]}")
        return cls(
            role=role,
            kind=kind,
            base_url=os.environ.get(f"{prefix}_BASE_URL"),
            model=os.environ.get(f"{prefix}_MODEL"),
        )


def make_backend(settings: BackendSettings, server_url: str | None = None,
                 server_model: str | None = None) -> Backend:
    """Build the backend; `server_*` describe a server the resource started (llama.cpp or vLLM)."""
    if settings.kind == "local":
        if not server_url or not server_model:
            raise ValueError("the local backend needs a running llama.cpp server")
        return OpenAICompatibleBackend(
            base_url=server_url, model=server_model, name="local",
            structured_output="llama_cpp", native_tools=False,
        )
    if settings.kind in ("openai", "vllm"):
        base_url = settings.base_url or server_url
        if not base_url or not settings.model:
            needs = "_MODEL (and _BASE_URL, or for vllm a model to serve)"
            raise ValueError(f"MAGNET_{settings.role.upper()}={settings.kind} needs MAGNET_{settings.role.upper()}{needs}")
        return OpenAICompatibleBackend(
            base_url=base_url, model=settings.model, name=settings.kind,
            api_key=os.environ.get(settings.api_key_env, "not-needed"),
            structured_output="json_schema", native_tools=True,
        )
    if settings.kind == "gemini":
        from magnet_dagster.llm.gemini_backend import GeminiBackend

        return GeminiBackend.from_env(model=settings.model)
    raise ValueError(f"unknown backend kind {settings.kind!r}")
