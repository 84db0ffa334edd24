"""Vertex AI batch prediction, an opt-in mode for the teacher's bulk steps (half the online price).

`write_batch_requests` writes the JSONL a Vertex batch job reads; once that file is in
Cloud Storage, `submit_batch_job` starts the job; `read_batch_results` turns the job's
output into replies keyed by the same cache key `LLMClient` computes, and `cache_rows`
shapes them for `llm_cache`, so the step's next online run finds every answer cached and
only pays for what the batch could not answer. `VertexBatchRunner` does the upload, the
polling and the download; `batch_mode.prefetch_with_batch` runs it for a step.

Vertex echoes each line's `request` in its output but promises nothing about other fields,
so the cache key travels in the request's `labels`, split in two because a label value
holds at most 63 characters.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from magnet_dagster.llm.client import LLMRequest, RawReply, cache_key
from magnet_dagster.llm.gemini_backend import GeminiBlocked, from_gemini_response, to_vertex_request

KEY_LABELS = ("magnet_key_0", "magnet_key_1")


def key_labels(key: str) -> dict[str, str]:
    half = len(key) // 2
    return {KEY_LABELS[0]: key[:half], KEY_LABELS[1]: key[half:]}


def line_key(line: dict[str, Any]) -> str | None:
    """The cache key of one input or output line: from its labels, else a top-level `key`."""
    labels = (line.get("request") or {}).get("labels") or {}
    if all(label in labels for label in KEY_LABELS):
        return "".join(labels[label] for label in KEY_LABELS)
    return line.get("key")


def write_batch_requests(
    requests: list[LLMRequest], model: str, path: str | Path, backend: str = "gemini"
) -> list[str]:
    """Write one `{"request": ...}` line per distinct request; return every request's cache key, in order.

    `backend` and `model` must be the online backend's `name` and `model`, or the keys miss
    the cache that online runs read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    written: set[str] = set()
    with path.open("w", encoding="utf-8") as out:
        for request in requests:
            key = cache_key(backend, model, request)
            keys.append(key)
            if key in written:
                continue
            written.add(key)
            body = {**to_vertex_request(request), "labels": key_labels(key)}
            out.write(json.dumps({"request": body}, ensure_ascii=False) + "\n")
    return keys


def _output_files(path: Path) -> list[Path]:
    """A downloaded output folder holds one or more `predictions*.jsonl` files, possibly nested."""
    return sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]


def _outcomes(path: str | Path) -> Iterator[tuple[str, RawReply | str]]:
    for file in _output_files(Path(path)):
        with file.open(encoding="utf-8") as lines:
            for number, text in enumerate(lines, 1):
                if not text.strip():
                    continue
                line = json.loads(text)
                key = line_key(line)
                if key is None:
                    raise ValueError(f"{file}:{number}: no magnet cache key in the line's request labels")
                status, response = line.get("status"), line.get("response")
                if status or not response:
                    detail = status if isinstance(status, str) else json.dumps(status)
                    yield key, f"batch error: {detail or 'no response'}"
                    continue
                try:
                    yield key, from_gemini_response(response)
                except GeminiBlocked as exc:
                    yield key, f"GeminiBlocked: {exc}"


def read_batch_results(path: str | Path) -> dict[str, RawReply]:
    """Cache key -> reply for every line the model answered; failed and blocked lines are left out."""
    return {key: outcome for key, outcome in _outcomes(path) if isinstance(outcome, RawReply)}


def read_batch_errors(path: str | Path) -> dict[str, str]:
    """Cache key -> why, for requests with no answer in the output (they go online next run)."""
    failed: dict[str, str] = {}
    answered: set[str] = set()
    for key, outcome in _outcomes(path):
        if isinstance(outcome, RawReply):
            answered.add(key)
        else:
            failed[key] = outcome
    return {key: why for key, why in failed.items() if key not in answered}


def cache_rows(results: dict[str, RawReply], model: str, backend: str = "gemini") -> list[dict[str, Any]]:
    """`llm_cache` rows in the shape `LLMClient` writes, for `LineageStore.append("llm_cache", ...)`."""
    now = datetime.now(UTC).replace(tzinfo=None).isoformat()
    return [
        {
            "cache_key": key,
            "backend": backend,
            "model": model,
            "response": {"message": raw.message, "input_tokens": raw.input_tokens, "output_tokens": raw.output_tokens},
            "created_at": now,
        }
        for key, raw in results.items()
    ]


def submit_batch_job(
    input_uri: str,
    output_uri_prefix: str,
    model: str,
    project: str | None = None,
    location: str | None = None,
    display_name: str | None = None,
    credentials: Any = None,
) -> str:
    """Start a Vertex batch job over `gs://` input JSONL; return the job's resource name.

    Polling, and downloading the output under `output_uri_prefix`, are left to the caller.
    """
    from google import genai
    from google.genai import types

    client = genai.Client(vertexai=True, project=project, location=location, credentials=credentials)
    try:
        job = client.batches.create(
            model=model,
            src=input_uri,
            config=types.CreateBatchJobConfig(dest=output_uri_prefix, display_name=display_name),
        )
    finally:
        client.close()
    if not job.name:
        raise RuntimeError("Vertex AI accepted the batch job but returned no job name")
    return job.name


#: Job states after which Vertex changes nothing more; only the first two leave output to read.
USABLE_STATES = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})
TERMINAL_STATES = USABLE_STATES | {"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def split_gs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/some/prefix` (or a bare bucket name) -> (`bucket`, `some/prefix`)."""
    bucket, _, prefix = uri.removeprefix("gs://").strip("/").partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no Cloud Storage bucket")
    return bucket, prefix


def _state(job: Any) -> str:
    return str(getattr(job.state, "value", job.state))


@dataclass
class VertexBatchRunner:
    """`BatchRunner` on Vertex AI: each job gets its own folder under `bucket`, so no output is stale.

    Google libraries are imported on first use, so the default (online) mode never needs them.
    """

    bucket: str
    project: str | None = None
    location: str | None = None
    credentials: Any = None
    poll_s: float = 30.0
    timeout_s: float = 24 * 3600.0

    @classmethod
    def from_env(cls) -> VertexBatchRunner:
        bucket = os.environ.get("MAGNET_VERTEX_BATCH_BUCKET")
        if not bucket:
            raise ValueError("MAGNET_TEACHER_BATCH=vertex needs MAGNET_VERTEX_BATCH_BUCKET (gs://bucket[/prefix])")
        return cls(
            bucket=bucket,
            project=os.environ.get("GOOGLE_CLOUD_PROJECT"),
            location=os.environ.get("GOOGLE_CLOUD_LOCATION", "us-central1"),
        )

    def run(self, requests_file: Path, model: str, output_dir: Path) -> Path:
        from google.cloud import storage

        bucket_name, root = split_gs_uri(self.bucket)
        folder = "/".join(p for p in (root, "magnet-batch", uuid.uuid4().hex[:16]) if p)
        gcs = storage.Client(project=self.project, credentials=self.credentials)
        gcs.bucket(bucket_name).blob(f"{folder}/requests.jsonl").upload_from_filename(str(requests_file))
        name = submit_batch_job(
            f"gs://{bucket_name}/{folder}/requests.jsonl",
            f"gs://{bucket_name}/{folder}/output",
            model,
            self.project,
            self.location,
            display_name=f"magnet-{folder.rsplit('/', 1)[-1]}",
            credentials=self.credentials,
        )
        self.wait(name)
        return self.download(gcs, bucket_name, f"{folder}/output/", output_dir)

    def wait(self, name: str) -> None:
        """Poll until the job ends; a job past `timeout_s` is cancelled, so it is not paid for after we gave up."""
        from google import genai

        client = genai.Client(vertexai=True, project=self.project, location=self.location, credentials=self.credentials)
        deadline = time.monotonic() + self.timeout_s
        try:
            job = client.batches.get(name=name)
            while _state(job) not in TERMINAL_STATES:
                if time.monotonic() > deadline:
                    client.batches.cancel(name=name)
                    raise TimeoutError(
                        f"Vertex batch job {name} still {_state(job)} after {self.timeout_s:.0f}s; cancelled"
                    )
                time.sleep(self.poll_s)
                job = client.batches.get(name=name)
        finally:
            client.close()
        if _state(job) not in USABLE_STATES:
            raise RuntimeError(f"Vertex batch job {name} ended {_state(job)}: {job.error}")

    @staticmethod
    def download(gcs: Any, bucket_name: str, prefix: str, output_dir: Path) -> Path:
        """Copy every output JSONL under `prefix`, keeping the job's sub-folders."""
        for blob in gcs.list_blobs(bucket_name, prefix=prefix):
            if blob.name.endswith(".jsonl"):
                local = output_dir / blob.name.removeprefix(prefix)
                local.parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(local))
        output_dir.mkdir(parents=True, exist_ok=True)
        return output_dir
