"""Batch mode: answer a bulk step's requests with one batch job, into the cache the online client reads.

A step whose requests are all known up front hands them to `prefetch_with_batch` before
its online loop. Requests already in `llm_cache` are skipped, the rest go out as one
batch job, and every answer is stored under the key `LLMClient` computes. The online loop
that follows is the same code in both modes: it finds the batch's answers as cache hits
and pays the online price only for what the batch could not answer.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from magnet_dagster.llm.client import LLMClient, LLMRequest, cache_key
from magnet_dagster.llm.journal import ingest_journals
from magnet_dagster.llm.vertex_batch import cache_rows, read_batch_errors, read_batch_results, write_batch_requests
from magnet_dagster.store.lineage import LineageStore

#: Backends whose requests a Vertex batch job can answer (the request file is Gemini's REST shape).
BATCH_BACKENDS = ("gemini",)


class BatchRunner(Protocol):
    """Runs one batch job: upload, submit, wait for a terminal state, download."""

    def run(self, requests_file: Path, model: str, output_dir: Path) -> Path:
        """Return the local output: a JSONL file, or a folder holding the job's JSONL files."""
        ...


@dataclass(frozen=True)
class BatchOutcome:
    """What one prefetch did; `requested` counts distinct requests (repeats share one answer)."""

    requested: int
    already_cached: int
    answered: int
    failed: int
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def submitted(self) -> int:
        return self.answered + self.failed

    def as_metadata(self) -> dict[str, int]:
        return {
            "batch_requested": self.requested,
            "batch_already_cached": self.already_cached,
            "batch_submitted": self.submitted,
            "batch_answered": self.answered,
            "batch_failed": self.failed,
        }


def keyed(backend: str, model: str, requests: Sequence[LLMRequest]) -> dict[str, LLMRequest]:
    """Cache key -> request, first occurrence kept, keyed exactly as `LLMClient.chat` keys it."""
    out: dict[str, LLMRequest] = {}
    for request in requests:
        out.setdefault(cache_key(backend, model, request), request)
    return out


def stored_keys(store: LineageStore, backend: str, model: str, keys: Sequence[str]) -> set[str]:
    """Which of `keys` `llm_cache` already answers for this backend and model."""
    if not keys:
        return set()
    rows = store.query(
        "SELECT cache_key FROM llm_cache WHERE backend = ? AND model = ? AND list_contains(?, cache_key)",
        [backend, model, list(keys)],
    )
    return {r["cache_key"] for r in rows}


@contextmanager
def _folder(workdir: str | Path | None) -> Iterator[Path]:
    """`workdir` is kept for inspection; without one the files live only as long as the job."""
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="magnet-batch-") as tmp:
        yield Path(tmp)


async def prefetch_with_batch(
    client: LLMClient, requests: Sequence[LLMRequest], runner: BatchRunner, workdir: str | Path | None = None
) -> BatchOutcome:
    """Answer the uncached `requests` by one batch job and store the answers in `client`'s cache.

    Works on an open or a not yet opened client. The runner blocks for as long as the job
    runs (minutes to hours), so it runs in a worker thread. A request the batch could not
    answer is counted in `failed` and simply goes online when the step asks for it.
    """
    backend, model = client.backend.name, client.backend.model
    if backend not in BATCH_BACKENDS:
        raise ValueError(f"batch mode needs a {' or '.join(BATCH_BACKENDS)} backend, not {backend!r}")
    wanted = keyed(backend, model, requests)
    ingest_journals(client.journal_dir, client.store)  # answers a killed run paid for count as cached
    cached = stored_keys(client.store, backend, model, list(wanted)) | {key for key in wanted if client.cached(key)}
    misses = {key: request for key, request in wanted.items() if key not in cached}
    if not misses:
        return BatchOutcome(len(wanted), len(cached), 0, 0)
    with _folder(workdir) as folder:
        requests_file = folder / "requests.jsonl"
        write_batch_requests(list(misses.values()), model, requests_file, backend=backend)
        output = await asyncio.to_thread(runner.run, requests_file, model, folder / "output")
        results = {k: v for k, v in read_batch_results(output).items() if k in misses}
        errors = {k: v for k, v in read_batch_errors(output).items() if k in misses}
    errors.update({key: "batch error: no output line" for key in misses if key not in results and key not in errors})
    client.store.append("llm_cache", cache_rows(results, model, backend))
    client.remember(results)
    return BatchOutcome(len(wanted), len(cached), len(results), len(errors), errors)
