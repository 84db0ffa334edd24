"""Resources: the lineage store and the two LLMs (teacher, student).

Both LLMs default to the embedded llama.cpp server, started on 127.0.0.1 when a run first
needs it and stopped when the run ends; `MAGNET_TEACHER` / `MAGNET_STUDENT` switch them to
Gemini on Vertex AI, vLLM or any OpenAI-compatible server with environment variables only.
"""


from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from magnet_dagster import config
from magnet_dagster.llm import local_server
from magnet_dagster.llm.backends import BackendSettings, make_backend
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore


class LineageStoreResource(dg.ConfigurableResource):
    """`$MAGNET_HOME/lineage.duckdb`, opened per unit of work (never held across LLM calls)."""

    path: str | None = None

    def get(self) -> LineageStore:
        return LineageStore(self.path or config.lineage_db_path())


class LLMResource(dg.ConfigurableResource):
    """An LLM role; `client()` binds it to one asset run so every call is recorded there."""

    role: str
    concurrency: int = 4
    _server: Any = PrivateAttr(default=None)

    def settings(self) -> BackendSettings:
        return BackendSettings.from_env(self.role)

    def _ensure_server(self) -> Any:
        if self._server is None and self.settings().kind == "local":
            config.magnet_home().mkdir(parents=True, exist_ok=True)
            self._server = local_server.acquire(log_path=config.magnet_home() / "llama_server.log")
        return self._server

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._server is not None:
            local_server.release(self._server)
            self._server = None

    def client(self, store: LineageStore, context: dg.AssetExecutionContext) -> LLMClient:
        settings = self.settings()
        server = self._ensure_server()
        backend = make_backend(
            settings,
            local_base_url=server.base_url if server else None,
            local_model=server.model_name if server else None,
        )
        return LLMClient(
            backend=backend, store=store, journal_dir=config.magnet_home() / "llm_journal",
            tool_set=context.partition_key, run_id=context.run.run_id,
            asset=context.asset_key.to_user_string(), concurrency=self.concurrency,
        ).open()
