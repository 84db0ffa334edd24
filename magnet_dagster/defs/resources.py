"""Resources: the lineage store and the two LLMs (teacher, student).

Both LLMs default to the embedded llama.cpp server, started on 127.0.0.1 when a run first
needs it and stopped when the run ends; `MAGNET_TEACHER` / `MAGNET_STUDENT` switch them to
Gemini on Vertex AI, vLLM or any OpenAI-compatible server with environment variables only;
`MAGNET_TEACHER_BATCH=vertex` sends bulk steps' requests to Vertex batch prediction first.
"""

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from magnet_dagster import config
from magnet_dagster.graph.judge import Prefetch
from magnet_dagster.llm import local_server
from magnet_dagster.llm.backends import BackendSettings, make_backend, make_batch_runner
from magnet_dagster.llm.batch_mode import prefetch_with_batch
from magnet_dagster.llm.client import Backend, LLMClient, LLMRequest
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.llm.vllm_server import start_vllm
from magnet_dagster.store.lineage import LineageStore, open_lineage_store
from magnet_dagster.training.checkpoints import checkpoint_path, is_checkpoint, served_name


class LineageStoreResource(dg.ConfigurableResource):
    """`$MAGNET_HOME/lineage.duckdb`, or the shared store `MAGNET_LINEAGE_URL` names (`open_lineage_store`)."""

    path: str | None = None

    def get(self) -> LineageStore:
        return open_lineage_store(self.path)


class LLMResource(dg.ConfigurableResource):
    """An LLM role; `client()` binds it to one asset run so every call is recorded there.

    `local` starts (or shares, with every process of this `MAGNET_HOME`) the embedded llama.cpp
    server; `vllm` without a base URL starts `vllm serve MAGNET_<ROLE>_MODEL`; both are stopped
    when the run ends (a shared server when its last user has gone).
    """

    role: str
    #: requests in flight at once; unset: the embedded server's slot count, else 4
    concurrency: int | None = None
    _local: Any = PrivateAttr(default=None)
    _vllm: Any = PrivateAttr(default=None)

    def settings(self) -> BackendSettings:
        return BackendSettings.from_env(self.role)

    def _server(self, settings: BackendSettings) -> tuple[str | None, str | None]:
        home = config.magnet_home()
        if settings.kind == "local":
            if self._local is None:
                home.mkdir(parents=True, exist_ok=True)
                self._local = local_server.acquire(log_path=home / "llama_server.log", run_dir=home / "run")
            return self._local.base_url, self._local.model_name
        if settings.kind == "vllm" and not settings.base_url:
            if self._vllm is None:
                if not settings.model:
                    raise ValueError(f"MAGNET_{self.role.upper()}=vllm needs MAGNET_{self.role.upper()}_MODEL")
                home.mkdir(parents=True, exist_ok=True)
                self._vllm = start_vllm(settings.model, log_path=home / f"vllm_{self.role}.log")
            return self._vllm.base_url, settings.model
        return None, None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._local is not None:
            local_server.release(self._local)
            self._local = None
        if self._vllm is not None:
            self._vllm.stop()
            self._vllm = None

    def backend(self) -> Backend:
        """The role's backend, starting its server first when the role needs one here."""
        settings = self.settings()
        url, model = self._server(settings)
        return make_backend(settings, url, model)

    @contextmanager
    def serving(self, checkpoint: str | None) -> Iterator[tuple[Backend | None, str | None]]:
        """(backend, checkpoint path) with vLLM serving `checkpoint` for the block: a name under
        `$MAGNET_HOME/checkpoints` (`base`, a training run's) or a path to a Hugging Face directory.
        Started from the vLLM venv (`make vllm`) with tool calling and stopped on leaving, so two
        checkpoints (before and after training) never hold memory at once; a missing checkpoint
        or a failed start is refused with the log file's name (`start_vllm`). Without a
        checkpoint: (None, None), and `client()` uses the role's own backend."""
        if checkpoint is None:
            yield None, None
            return
        path = checkpoint_path(checkpoint)
        home = config.magnet_home()
        home.mkdir(parents=True, exist_ok=True)
        name = served_name(path) if is_checkpoint(path) else path.name
        server = start_vllm(path, log_path=home / f"vllm_{self.role}.log", served_name=name)
        try:
            yield (
                OpenAICompatibleBackend(
                    base_url=server.base_url,
                    model=name,
                    name="vllm",
                    structured_output="json_schema",
                    native_tools=True,
                ),
                str(path),
            )
        finally:
            server.stop()

    def _default_concurrency(self) -> int:
        return local_server.parallel_slots() if self.settings().kind == "local" else 4

    def client(
        self, store: LineageStore, context: dg.AssetExecutionContext, backend: Backend | None = None
    ) -> LLMClient:
        """A client bound to this asset run: the role's backend, or `backend` (e.g. from `serving`)."""
        return LLMClient(
            backend=backend or self.backend(),
            store=store,
            journal_dir=config.magnet_home() / "llm_journal",
            tool_set=context.partition_key if context.has_partition_key else None,
            run_id=context.run.run_id,
            asset=context.asset_key.to_user_string(),
            concurrency=self.concurrency or (8 if backend else self._default_concurrency()),
        ).open()

    def prefetcher(self, client: LLMClient) -> Prefetch | None:
        """In batch mode, a function that answers a bulk step's independent requests by one batch
        job into the cache and returns the counts as asset metadata; None when the role stays online.
        """
        runner = make_batch_runner(self.settings())
        if runner is None:
            return None

        async def prefetch(requests: Sequence[LLMRequest]) -> dict[str, int]:
            workdir = config.magnet_home() / "batch" / f"{client.run_id or 'run'}-{uuid.uuid4().hex[:8]}"
            outcome = await prefetch_with_batch(client, requests, runner, workdir)
            return outcome.as_metadata()

        return prefetch
