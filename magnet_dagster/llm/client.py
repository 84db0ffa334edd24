"""The LLM client every stage uses: async, bounded, retried, cached and recorded.

Backends only turn an `LLMRequest` into a raw reply; this module owns what must be the
same for all of them: the content-addressed cache, the per-call record, concurrency and
the failure budget. A call that still fails after retries comes back as an error reply
(recorded, counted) so the caller skips one item instead of crashing the asset. So does a
reply that breaks `Limits` (too long, nested too deep): it is never parsed and never cached,
and neither is a cached answer that breaks them (a home filled by an older version).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from magnet_dagster.config import Limits
from magnet_dagster.config import limits as read_limits
from magnet_dagster.llm.journal import CallJournal, IngestReport, ingest_journals
from magnet_dagster.llm.reply_guard import scrub, scrub_text, violation
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.tools.calls import CallParseError, ToolCall, parse_message_calls


@dataclass(frozen=True)
class LLMRequest:
    messages: tuple[dict[str, Any], ...] | list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    response_schema: dict[str, Any] | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0

    def canonical(self) -> dict[str, Any]:
        return {
            "messages": list(self.messages),
            "tools": self.tools,
            "response_schema": self.response_schema,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }


@dataclass
class RawReply:
    """What a backend returns: an OpenAI-shaped assistant message plus token counts."""

    message: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class LLMReply:
    message: dict[str, Any]
    call_id: str
    cache_hit: bool
    outcome: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def content(self) -> str:
        return self.message.get("content") or ""

    def json(self) -> Any:
        """The content parsed as JSON (structured output), or None; never raises."""
        content = self.content
        if not isinstance(content, str):
            return None
        text = content.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            # strict=False: small models put raw newlines inside strings; the value is still data.
            return json.loads(text, strict=False)
        except (ValueError, RecursionError):
            return None

    def tool_calls(self) -> list[ToolCall]:
        """The calls in the reply, or [] when there are none or they cannot be read; never raises."""
        try:
            return parse_message_calls(self.message)
        except (CallParseError, ValueError, RecursionError, TypeError, KeyError, AttributeError):
            return []


class Backend(Protocol):
    name: str
    model: str

    async def complete(self, request: LLMRequest) -> RawReply: ...

    async def aclose(self) -> None: ...


def cache_key(backend: str, model: str, request: LLMRequest) -> str:
    """Hash of everything that changes the answer: backend, model and the whole request."""
    payload = {"backend": backend, "model": model, **request.canonical()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def vetted(response: Any, bounds: Limits) -> dict[str, Any] | None:
    """A cache response (`{"message", "input_tokens", "output_tokens"}`) made safe, or None if unusable.

    Strings are scrubbed to valid Unicode; a message that breaks `bounds` is None (a miss).
    """
    if not isinstance(response, dict):
        return None
    response = scrub(response)
    return response if violation(response.get("message"), bounds) is None else None


def _load_response(text: str, bounds: Limits) -> dict[str, Any] | None:
    """One stored `llm_cache.response`, parsed and vetted; unreadable is a miss, never an error."""
    try:
        return vetted(json.loads(text), bounds)
    except (ValueError, RecursionError):
        return None


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


@dataclass
class CallStats:
    calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def failure_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "new_requests": self.calls - self.cache_hits,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass
class LLMClient:
    """A backend bound to one asset run: what it records is tagged with tool set and run."""

    backend: Backend
    store: LineageStore
    journal_dir: Path
    tool_set: str | None = None
    run_id: str | None = None
    asset: str | None = None
    concurrency: int = 4
    #: bounds on replies, read from the environment when the client is built
    limits: Limits = field(default_factory=read_limits)
    stats: CallStats = field(default_factory=CallStats)
    #: quarantine files journal ingests wrote while this client lived (for the caller to report)
    quarantined: list[Path] = field(default_factory=list)
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    #: keys whose stored answer broke the bounds (a miss); a fresh answer replaces it on close
    _rejected: set[str] = field(default_factory=set, repr=False)
    _superseded: set[str] = field(default_factory=set, repr=False)
    _journal: CallJournal | None = field(default=None, repr=False)
    _sem: asyncio.Semaphore | None = field(default=None, repr=False)
    #: cache key -> done when the one request making that call has its answer
    _inflight: dict[str, asyncio.Future[None]] = field(default_factory=dict, repr=False)

    @property
    def model(self) -> str:
        return self.backend.model

    def open(self) -> LLMClient:
        self._note(ingest_journals(self.journal_dir, self.store))
        # Read as text and vetted one by one: an entry an older version cached past today's
        # bounds is a miss, and a hostile one cannot fail the query.
        rows = self.store.query(
            "SELECT cache_key, CAST(response AS VARCHAR) AS response FROM llm_cache WHERE backend = ? AND model = ?",
            [self.backend.name, self.backend.model],
        )
        self._cache, self._rejected = {}, set()
        for r in rows:
            response = _load_response(r["response"], self.limits)
            if response is None:
                self._rejected.add(r["cache_key"])
            else:
                self._cache[r["cache_key"]] = response
        self._journal = CallJournal(self.journal_dir)
        return self

    def _note(self, report: IngestReport) -> IngestReport:
        self.quarantined += [p for p in report.quarantined if p not in self.quarantined]
        return report

    async def aclose(self) -> None:
        await self.backend.aclose()
        self.close()

    def cached(self, key: str) -> bool:
        return key in self._cache

    def remember(self, answers: dict[str, RawReply]) -> None:
        """Answers that reached `llm_cache` after this client opened (a batch job's), served as hits."""
        for key, raw in answers.items():
            response = vetted(
                {"message": raw.message, "input_tokens": raw.input_tokens, "output_tokens": raw.output_tokens},
                self.limits,
            )
            if response is not None:
                self._cache[key] = response

    def close(self) -> None:
        if self._journal is not None:
            self._drop_superseded()
            self._note(self._journal.close_into(self.store))
            self._journal = None

    def _drop_superseded(self) -> None:
        """Delete stored answers this run replaced, so the fresh ones (journalled) can take their key.

        Only replaced ones: an answer merely outside today's bounds is kept, in case they widen.
        """
        if not self._superseded:
            return
        with self.store.connect() as con:
            con.execute(
                "DELETE FROM llm_cache WHERE backend = ? AND model = ? AND list_contains(?, cache_key)",
                [self.backend.name, self.backend.model, sorted(self._superseded)],
            )
        self._superseded.clear()

    async def chat(self, request: LLMRequest) -> LLMReply:
        if self._journal is None:
            raise RuntimeError("LLMClient used before open()")
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        key = cache_key(self.backend.name, self.backend.model, request)
        call_id = uuid.uuid4().hex[:16]
        if key not in self._cache and key in self._inflight:
            # The same request is on its way: its answer will be this one's (one payment).
            await asyncio.shield(self._inflight[key])
        cached = self._cache.get(key)
        if cached is not None:
            self._record(call_id, key, request, cached, True, "ok", None, 0.0)
            return LLMReply(cached["message"], call_id, True, "ok")
        done = self._inflight[key] = asyncio.get_running_loop().create_future()
        try:
            return await self._complete(request, key, call_id)
        finally:
            if self._inflight.get(key) is done:
                del self._inflight[key]
            done.set_result(None)

    async def _complete(self, request: LLMRequest, key: str, call_id: str) -> LLMReply:
        assert self._sem is not None
        async with self._sem:
            started = time.perf_counter()
            try:
                raw = await self.backend.complete(request)
            except Exception as exc:
                latency = (time.perf_counter() - started) * 1000
                failure = scrub_text(f"{type(exc).__name__}: {exc}"[:500])
                self._record(call_id, key, request, None, False, "error", failure, latency)
                return LLMReply({"role": "assistant", "content": ""}, call_id, False, "error", failure)
            latency = (time.perf_counter() - started) * 1000
        response = {"message": scrub(raw.message), "input_tokens": raw.input_tokens, "output_tokens": raw.output_tokens}
        error = violation(response["message"], self.limits)
        if error is not None:
            # Paid for (tokens counted) but unusable: recorded as an error, never cached.
            self._record(call_id, key, request, response, False, "error", error, latency)
            return LLMReply({"role": "assistant", "content": ""}, call_id, False, "error", error)
        self._cache[key] = response
        if key in self._rejected:
            self._superseded.add(key)
        self._record(call_id, key, request, response, False, "ok", None, latency)
        return LLMReply(response["message"], call_id, False, "ok")

    def _record(
        self,
        call_id: str,
        key: str,
        request: LLMRequest,
        response: dict[str, Any] | None,
        cache_hit: bool,
        outcome: str,
        error: str | None,
        latency_ms: float,
    ) -> None:
        self.stats.calls += 1
        self.stats.cache_hits += int(cache_hit)
        self.stats.errors += int(outcome != "ok")
        tokens_in = (response or {}).get("input_tokens", 0) if not cache_hit else 0
        tokens_out = (response or {}).get("output_tokens", 0) if not cache_hit else 0
        self.stats.input_tokens += tokens_in
        self.stats.output_tokens += tokens_out
        prompt_hash = hashlib.sha256(json.dumps(list(request.messages), sort_keys=True).encode()).hexdigest()[:16]
        assert self._journal is not None
        self._journal.write(
            "llm_calls",
            {
                "call_id": call_id,
                "tool_set": self.tool_set,
                "run_id": self.run_id,
                "asset": self.asset,
                "backend": self.backend.name,
                "model": self.backend.model,
                "cache_key": key,
                "prompt_hash": prompt_hash,
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "latency_ms": latency_ms,
                "cache_hit": cache_hit,
                "outcome": outcome,
                "error": error,
                "created_at": _now(),
            },
        )
        if outcome == "ok" and not cache_hit and response is not None:
            self._journal.write(
                "llm_cache",
                {
                    "cache_key": key,
                    "backend": self.backend.name,
                    "model": self.backend.model,
                    "response": response,
                    "created_at": _now(),
                },
            )

    async def gather(self, requests: list[LLMRequest]) -> list[LLMReply]:
        return list(await asyncio.gather(*(self.chat(r) for r in requests)))
