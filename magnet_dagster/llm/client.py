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
import gc
import hashlib
import itertools
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, Protocol

from magnet_dagster.config import Limits
from magnet_dagster.config import limits as read_limits
from magnet_dagster.llm.journal import CallJournal, IngestReport, ingest_journals, journal_line
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


#: One encoder for the keys' JSON (`json.dumps` with options builds a new one per call).
_KEY_JSON = json.JSONEncoder(sort_keys=True, default=str).encode


def _key_json(value: Any) -> str:
    """`_KEY_JSON(value)`, with the common scalars written directly (as the encoder writes them)."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None:
        return "null"
    return _KEY_JSON(value)


def cache_key(backend: str, model: str, request: LLMRequest) -> str:
    """Hash of everything that changes the answer: backend, model and the whole request."""
    return request_hashes(backend, model, request)[0]


def request_hashes(backend: str, model: str, request: LLMRequest) -> tuple[str, str]:
    """(cache key, prompt hash), the messages JSON-encoded once for both.

    The key hashes `json.dumps({"backend", "model", **request.canonical()}, sort_keys=True,
    default=str)`; that text is assembled here from its parts in the same (sorted) order, so the
    messages, the bulk of a request, are encoded once and not twice (a test holds the two equal:
    a changed key would orphan every cached answer). The prompt hash is the messages' alone.
    """
    messages = _KEY_JSON(list(request.messages))
    text = (
        f'{{"backend": {_key_json(backend)}, "max_tokens": {_key_json(request.max_tokens)}, '
        f'"messages": {messages}, "model": {_key_json(model)}, '
        f'"response_schema": {_key_json(request.response_schema)}, "seed": {_key_json(request.seed)}, '
        f'"temperature": {_key_json(request.temperature)}, "tools": {_key_json(request.tools)}}}'
    )
    return hashlib.sha256(text.encode()).hexdigest(), hashlib.sha256(messages.encode()).hexdigest()[:16]


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


class _GcFreeze:
    """While LLM clients are open, the objects the process held before are out of the collector's sight.

    A full garbage collection walks every tracked object of the process (in a Dagster step,
    hundreds of thousands) and stops the event loop meanwhile: 80-170 ms once every few thousand
    calls here, each a stall of every request in flight (about 5% of the rate at concurrency 256,
    `benchmarks/llm_client.py`). `gc.freeze()` leaves the objects that exist at the first open out
    of collections (reference counting still frees them; only cycles among them wait), and the last
    client to close unfreezes them. Both are O(1).
    """

    def __init__(self) -> None:
        self.holders = 0
        self.lock = threading.Lock()

    def hold(self) -> None:
        with self.lock:
            self.holders += 1
            if self.holders == 1:
                gc.freeze()

    def release(self) -> None:
        with self.lock:
            self.holders -= 1
            if self.holders == 0:
                gc.unfreeze()


_GC_FREEZE = _GcFreeze()


class _CallJournal(CallJournal):
    """The call journal, a call's lines (its record, and its answer for the cache) in one write."""

    def write_all(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        self._file.write(b"".join(journal_line(table, row) for table, row in entries))
        self._file.flush()


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


#: Keys per lookup query: the first query of a burst carries at most `FIRST_LOOKUP` (its
#: requests can start early), the next ones up to `LOOKUP_CHUNK`. A query on the DuckDB file
#: costs about the same for 1 key as for hundreds (opening the file dominates: about 20 ms of
#: CPU; with a million cached answers 100 ms for 64 keys, 550 ms for 4,096), so few big queries
#: are what keeps lookups cheap and ahead of the requests; Postgres takes up to 65,535 parameters.
FIRST_LOOKUP = 256
LOOKUP_CHUNK = 4096


def _padded(keys: list[str]) -> list[str]:
    """`keys` with the last repeated up to a power of two (a repeated key changes nothing in `IN`):
    a few distinct statements, not one per key count, for a store that caches its statements."""
    size = 1 << (len(keys) - 1).bit_length()
    return keys + [keys[-1]] * (size - len(keys))


def _placeholders(n: int) -> str:
    return ", ".join(["?"] * n)


@dataclass
class LLMClient:
    """A backend bound to one asset run: what it records is tagged with tool set and run.

    The stored cache is never loaded whole: each request's key is looked up in `llm_cache`
    when it is asked, by one query (in a worker thread) for all the keys asked before it runs,
    the keys asked meanwhile in the next (`_lookup`), so start-up and memory do not grow with
    the home's history. Answers this run made or read stay in `_cache` (as many as it asks for).
    """

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
    #: answers this run made, read from the store, or was handed (`remember`)
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    #: keys whose stored answer broke the bounds (a miss); a fresh answer replaces it on close
    _rejected: set[str] = field(default_factory=set, repr=False)
    _superseded: set[str] = field(default_factory=set, repr=False)
    _journal: _CallJournal | None = field(default=None, repr=False)
    _sem: asyncio.Semaphore | None = field(default=None, repr=False)
    #: cache key -> done when the one request making that call has its answer
    _inflight: dict[str, asyncio.Future[None]] = field(default_factory=dict, repr=False)
    #: keys waiting for a store lookup (in order), each with the future its askers await
    _asked: dict[str, asyncio.Future[dict[str, Any] | None]] = field(default_factory=dict, repr=False)
    _pump: asyncio.Task[None] | None = field(default=None, repr=False)
    #: the event loop the futures above belong to (a client may serve several `asyncio.run`s)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    @property
    def model(self) -> str:
        return self.backend.model

    def open(self) -> LLMClient:
        """Ingest journals a killed run left (their answers were paid for), then start a journal.

        Nothing of `llm_cache` is read here: lookups happen per request (`_lookup`). The store is
        reached once, so an unreachable one fails here, and its first connect (the schema check,
        tens of ms) does not hold up the first requests.
        """
        self._note(ingest_journals(self.journal_dir, self.store))
        self.store.query("SELECT 1 AS ready")
        if self._journal is None:  # a second open keeps the journal (and the freeze) it has
            _GC_FREEZE.hold()
            self._journal = _CallJournal(self.journal_dir)
        return self

    def _note(self, report: IngestReport) -> IngestReport:
        self.quarantined += [p for p in report.quarantined if p not in self.quarantined]
        return report

    async def aclose(self) -> None:
        await self.backend.aclose()
        self.close()

    def cached(self, key: str) -> bool:
        """Whether this run already holds an answer for `key` (made, read or remembered).

        The stored cache is not consulted: `batch_mode.stored_keys` asks the store for many keys at once.
        """
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
            try:
                self._drop_superseded()
                self._note(self._journal.close_into(self.store))
            finally:
                self._journal = None
                _GC_FREEZE.release()

    def _drop_superseded(self) -> None:
        """Delete stored answers this run replaced, so the fresh ones (journalled) can take their key.

        Only replaced ones: an answer merely outside today's bounds is kept, in case they widen.
        """
        if not self._superseded:
            return
        keys = sorted(self._superseded)
        with self.store.connect() as con:
            for i in range(0, len(keys), LOOKUP_CHUNK):
                chunk = keys[i : i + LOOKUP_CHUNK]
                con.execute(
                    "DELETE FROM llm_cache WHERE backend = ? AND model = ? "
                    f"AND cache_key IN ({_placeholders(len(chunk))})",
                    [self.backend.name, self.backend.model, *chunk],
                )
        self._superseded.clear()

    def _bind_loop(self) -> None:
        """Futures, the semaphore and the lookup task belong to one loop; a new loop starts them afresh."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._sem, self._pump = loop, asyncio.Semaphore(self.concurrency), None
            self._inflight, self._asked = {}, {}

    def _lookup(self, key: str) -> asyncio.Future[dict[str, Any] | None]:
        """The stored answer for `key` (None: none, or one that breaks the bounds), looked up with
        the other keys asked before the lookup task runs (one query for many keys)."""
        future = self._asked.get(key)
        if future is None:
            assert self._loop is not None
            future = self._asked[key] = self._loop.create_future()
            if self._pump is None or self._pump.done():
                self._pump = self._loop.create_task(self._run_lookups())
        return future

    async def _run_lookups(self) -> None:
        """Drain `_asked` in chunks, off the event loop; keys asked meanwhile join a later chunk."""
        chunk = FIRST_LOOKUP
        while self._asked:
            keys = list(itertools.islice(self._asked, chunk))
            chunk = LOOKUP_CHUNK
            try:
                stored = await asyncio.to_thread(self._read_stored, keys)
            except BaseException as exc:
                for key in keys:
                    future = self._asked.pop(key)
                    if future.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for key in keys:
                response = stored.get(key)
                if key in stored and response is None:
                    self._rejected.add(key)
                elif response is not None:
                    self._cache[key] = response
                future = self._asked.pop(key)
                if not future.done():
                    future.set_result(response)

    def _read_stored(self, keys: list[str]) -> dict[str, dict[str, Any] | None]:
        """Stored answers of `keys`, parsed and vetted (None: one an older version cached past today's
        bounds, or unreadable); read as text, so a hostile entry cannot fail the query. In a thread."""
        rows = self.store.query(
            "SELECT cache_key, CAST(response AS VARCHAR) AS response FROM llm_cache "
            f"WHERE backend = ? AND model = ? AND cache_key IN ({_placeholders(len(_padded(keys)))})",
            [self.backend.name, self.backend.model, *_padded(keys)],
        )
        return {r["cache_key"]: _load_response(r["response"], self.limits) for r in rows}

    async def chat(self, request: LLMRequest) -> LLMReply:
        if self._journal is None:
            raise RuntimeError("LLMClient used before open()")
        self._bind_loop()
        key, prompt_hash = request_hashes(self.backend.name, self.backend.model, request)
        call_id = os.urandom(8).hex()
        response = self._cache.get(key)
        if response is None and key not in self._inflight and key not in self._rejected:
            response = await asyncio.shield(self._lookup(key))
        while response is None and key in self._inflight:
            # The same request is on its way: its answer will be this one's (one payment).
            await asyncio.shield(self._inflight[key])
            response = self._cache.get(key)
        if response is not None:
            self._record(call_id, key, prompt_hash, response, True, "ok", None, 0.0)
            return LLMReply(response["message"], call_id, True, "ok")
        assert self._loop is not None
        done = self._inflight[key] = self._loop.create_future()
        try:
            return await self._complete(request, key, prompt_hash, call_id)
        finally:
            if self._inflight.get(key) is done:
                del self._inflight[key]
            done.set_result(None)

    async def _complete(self, request: LLMRequest, key: str, prompt_hash: str, call_id: str) -> LLMReply:
        assert self._sem is not None
        async with self._sem:
            started = time.perf_counter()
            try:
                raw = await self.backend.complete(request)
            except Exception as exc:
                latency = (time.perf_counter() - started) * 1000
                failure = scrub_text(f"{type(exc).__name__}: {exc}"[:500])
                self._record(call_id, key, prompt_hash, None, False, "error", failure, latency)
                return LLMReply({"role": "assistant", "content": ""}, call_id, False, "error", failure)
            latency = (time.perf_counter() - started) * 1000
        response = {"message": scrub(raw.message), "input_tokens": raw.input_tokens, "output_tokens": raw.output_tokens}
        error = violation(response["message"], self.limits)
        if error is not None:
            # Paid for (tokens counted) but unusable: recorded as an error, never cached.
            self._record(call_id, key, prompt_hash, response, False, "error", error, latency)
            return LLMReply({"role": "assistant", "content": ""}, call_id, False, "error", error)
        self._cache[key] = response
        if key in self._rejected:
            self._superseded.add(key)
        self._record(call_id, key, prompt_hash, response, False, "ok", None, latency)
        return LLMReply(response["message"], call_id, False, "ok")

    def _record(
        self,
        call_id: str,
        key: str,
        prompt_hash: str,
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
        now = _now()
        entries: list[tuple[str, dict[str, Any]]] = [
            (
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
                    "created_at": now,
                },
            )
        ]
        if outcome == "ok" and not cache_hit and response is not None:
            entries.append(
                (
                    "llm_cache",
                    {
                        "cache_key": key,
                        "backend": self.backend.name,
                        "model": self.backend.model,
                        "response": response,
                        "created_at": now,
                    },
                )
            )
        assert self._journal is not None
        self._journal.write_all(entries)

    async def gather(self, requests: list[LLMRequest]) -> list[LLMReply]:
        return list(await asyncio.gather(*(self.chat(r) for r in requests)))
