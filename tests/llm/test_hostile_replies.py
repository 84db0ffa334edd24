"""Replies a hostile or broken model can send, and journals they leave: none may fail a later run.

Uses a real DuckDB file, the LLM client with the scripted fake backend, and, for the
request timeout, a loopback HTTP server that never answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest

from magnet_dagster.config import Limits
from magnet_dagster.llm.client import LLMClient, LLMReply, LLMRequest, RawReply, cache_key
from magnet_dagster.llm.journal import QUARANTINE_DIR, ingest_journals, journal_line
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend
from magnet_dagster.llm.reply_guard import json_depth, scrub, scrub_text, violation
from magnet_dagster.store.lineage import LineageStore
from tests.fakes import ScriptedFakeBackend

REQ = LLMRequest(messages=[{"role": "user", "content": "hi"}])
DEEP = "[" * 40_000 + "]" * 40_000  # 80,000 characters: within max_reply_chars, far too deep
JOURNAL_LOGGER = "magnet_dagster.llm.journal"


def _store(tmp_path: Path) -> LineageStore:
    return LineageStore(tmp_path / "l.duckdb")


def _client(tmp_path: Path, backend: Any, **kw: Any) -> LLMClient:
    return LLMClient(backend, _store(tmp_path), tmp_path / "journal", **kw).open()


def _ask(client: LLMClient, request: LLMRequest = REQ) -> LLMReply:
    return asyncio.run(client.chat(request))


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    return _store(tmp_path).query("SELECT outcome, error, output_tokens FROM llm_calls ORDER BY created_at")


def _cached(tmp_path: Path) -> int:
    return _store(tmp_path).query("SELECT count(*) AS n FROM llm_cache")[0]["n"]


def _tool_reply(name: str, arguments: str, content: str | None = None) -> RawReply:
    return RawReply({"role": "assistant", "content": content, "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": name, "arguments": arguments}}]}, 10, 5)


def _old_journal_line(table: str, row: dict[str, Any]) -> str:
    """A line as the old journal wrote it: `ensure_ascii`, so a lone surrogate is a `\\ud800` escape."""
    return json.dumps({"table": table, "row": row}) + "\n"


def _call_row(call_id: str, **kw: Any) -> dict[str, Any]:
    return {"call_id": call_id, "tool_set": "t", "run_id": "old", "asset": None, "backend": "fake",
            "model": "scripted-fake", "cache_key": "k-" + call_id, "prompt_hash": "p", "input_tokens": 1,
            "output_tokens": 1, "latency_ms": 1.0, "cache_hit": False, "outcome": "ok", "error": None,
            "created_at": "2024-01-01T00:00:00", **kw}


def _cache_row(key: str, content: str) -> dict[str, Any]:
    return {"cache_key": key, "backend": "fake", "model": "scripted-fake",
            "response": {"message": {"role": "assistant", "content": content}, "input_tokens": 1,
                         "output_tokens": 1},
            "created_at": "2024-01-01T00:00:00"}


# ------------------------------------------------------------------ pure guards


def test_scrub_text_replaces_lone_surrogates_and_keeps_valid_text():
    assert scrub_text("a\ud800b") == "a\ufffdb"
    assert scrub_text("x\udfff") == "x\ufffd"
    assert scrub_text("héllo wörld 😀 中文") == "héllo wörld 😀 中文"
    assert scrub_text("\ud83d\ude00") == "😀"  # a pair split into two code points is joined, not replaced


def test_scrub_walks_nested_values_without_recursion():
    value: Any = "\ud800"
    for _ in range(50_000):
        value = [value]
    value = {"k\udc00": value, "n": 1, "none": None}
    out = scrub(value)
    assert list(out) == ["k\ufffd", "n", "none"]
    inner = out["k\ufffd"]
    while isinstance(inner, list):
        inner = inner[0]
    assert inner == "\ufffd"


@pytest.mark.parametrize(("text", "depth"), [
    ("", 0), ("plain prose", 0), ("[1, 2]", 1), ('{"a": [{"b": []}]}', 4),
    ('{"a": "[[[[[[[[[["}', 1), ('{"a": "quote \\" then [[[[ in string"}', 1),
    ('["\\\\", [[]]]', 3), ("]]]] [[", 2), (DEEP, 40_000),
])
def test_json_depth_counts_brackets_outside_strings(text, depth):
    assert json_depth(text) == depth


def test_violation_names_the_limit_and_the_numbers():
    bounds = Limits(max_reply_chars=20, max_reply_depth=3)
    assert violation({"role": "assistant", "content": "[[[1]]]"}, bounds) is None
    deep = violation({"role": "assistant", "content": "[[[[1]]]]"}, bounds)
    assert deep is not None and "max_reply_depth 3" in deep and "depth 4" in deep and "content" in deep
    long = violation(_tool_reply("f", '{"a": "' + "x" * 10 + '"}', content="y" * 8).message, bounds)
    assert long is not None and "max_reply_chars 20" in long and "27 characters" in long
    args = violation(_tool_reply("f", '{"a": [[[[1]]]]}').message, bounds)
    assert args is not None and "tool call 0 arguments" in args
    assert "not text" in violation({"role": "assistant", "content": [1]}, bounds)
    assert violation("nope", bounds) is not None


def test_reply_json_and_tool_calls_never_raise():
    deep = LLMReply({"role": "assistant", "content": DEEP}, "c", False, "ok")
    assert deep.json() is None
    assert deep.tool_calls() == []
    tagged = LLMReply({"role": "assistant", "content": "<tool_call>" + DEEP + "</tool_call>"}, "c", False, "ok")
    assert tagged.tool_calls() == []
    native = LLMReply(_tool_reply("f", '{"a": ' + DEEP + "}").message, "c", False, "ok")
    assert native.tool_calls() == []
    odd = LLMReply({"role": "assistant", "content": None, "tool_calls": [{"function": {"name": 3}}]}, "c", False, "ok")
    assert odd.tool_calls() == []


# ------------------------------------------------------------------ 1. lone surrogates


def test_a_lone_surrogate_reply_is_scrubbed_then_cached_and_journalled(tmp_path):
    client = _client(tmp_path, ScriptedFakeBackend(lambda r: "ok \ud800 é 😀"))
    reply = _ask(client)
    client.close()
    assert reply.ok and reply.content == "ok \ufffd é 😀"
    assert client.quarantined == []
    assert _cached(tmp_path) == 1 and [c["outcome"] for c in _calls(tmp_path)] == ["ok"]
    assert list((tmp_path / "journal").glob("*.jsonl")) == []
    again = _client(tmp_path, ScriptedFakeBackend(lambda r: "unused"))
    assert _ask(again).content == "ok \ufffd é 😀" and _ask(again).cache_hit
    again.close()


def test_lone_surrogates_in_tool_call_fields_are_scrubbed(tmp_path):
    backend = ScriptedFakeBackend(lambda r: _tool_reply("get\udc80", '{"city": "Par\ud800is"}'))
    client = _client(tmp_path, backend)
    reply = _ask(client)
    client.close()
    call = reply.message["tool_calls"][0]["function"]
    assert (call["name"], call["arguments"]) == ("get\ufffd", '{"city": "Par\ufffdis"}')
    assert reply.tool_calls()[0].arguments == {"city": "Par\ufffdis"}
    assert _cached(tmp_path) == 1


def test_journal_lines_are_valid_utf8_whatever_the_row_holds():
    line = journal_line("llm_calls", _call_row("a", error="boom \ud800"))
    assert line.endswith(b"\n") and json.loads(line)["row"]["error"] == "boom \ufffd"
    assert "é" in json.loads(journal_line("llm_calls", _call_row("b", error="é")))["row"]["error"]


def test_a_poisoned_home_recovers_on_the_next_open(tmp_path, caplog):
    """End to end: a `\\ud800` reply, plus an old journal with a raw surrogate escape, then a healthy run."""
    first = _client(tmp_path, ScriptedFakeBackend(lambda r: "bad \ud800 reply"), run_id="r1")
    assert _ask(first).ok
    first.close()
    journal = tmp_path / "journal"
    old = journal / "1234-oldjournal.jsonl"
    bad_line = _old_journal_line("llm_cache", _cache_row("k-old", "poison \ud800"))
    assert "\\ud800" in bad_line  # exactly what the old journal wrote
    old.write_text(_old_journal_line("llm_calls", _call_row("old1")) + bad_line
                   + _old_journal_line("llm_calls", _call_row("old2")), encoding="ascii")

    caplog.set_level(logging.WARNING, logger=JOURNAL_LOGGER)
    second = _client(tmp_path, ScriptedFakeBackend(lambda r: "healthy"), run_id="r2")
    reply = _ask(second, LLMRequest(messages=[{"role": "user", "content": "next"}]))
    second.close()

    target = journal / QUARANTINE_DIR / old.name
    assert reply.ok and reply.content == "healthy"
    assert second.quarantined == [target]
    assert target.read_text(encoding="ascii") == bad_line
    assert any(str(target) in r.getMessage() and r.name == JOURNAL_LOGGER for r in caplog.records)
    assert list(journal.glob("*.jsonl")) == []
    ids = {r["call_id"] for r in _store(tmp_path).query("SELECT call_id FROM llm_calls")}
    assert {"old1", "old2"} <= ids and len(ids) == 4  # good old lines, r1's call, r2's call
    third = _client(tmp_path, ScriptedFakeBackend(lambda r: "unused"))
    assert _ask(third).content == "bad \ufffd reply" and third.quarantined == []
    third.close()


def test_ingest_makes_one_bulk_append_per_table_when_every_line_is_good(tmp_path, monkeypatch):
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / "1-a.jsonl").write_bytes(b"".join(journal_line("llm_calls", _call_row(f"c{i}")) for i in range(20))
                                        + journal_line("llm_cache", _cache_row("k1", "fine")))
    store = _store(tmp_path)
    appends: list[tuple[str, int]] = []
    real = LineageStore.append

    def counted(self: LineageStore, table: str, rows: list[dict[str, Any]]) -> int:
        appends.append((table, len(rows)))
        return real(self, table, rows)

    monkeypatch.setattr(LineageStore, "append", counted)
    report = ingest_journals(journal, store)
    assert (report.moved, report.quarantined_lines, report.quarantined) == (21, 0, ())
    assert sorted(appends) == [("llm_cache", 1), ("llm_calls", 20)]


def test_ingest_isolates_bad_rows_and_bad_lines_and_keeps_the_rest(tmp_path, caplog):
    journal = tmp_path / "journal"
    journal.mkdir()
    path = journal / "1-mixed.jsonl"
    good = [journal_line("llm_calls", _call_row(f"c{i}")) for i in range(9)]
    null_backend = journal_line("llm_calls", _call_row("null", backend=None))  # NOT NULL column
    lines = [*good[:4], null_backend, b"not json at all\n", b"\xff\xfe broken utf-8\n",
             journal_line("no_such_table", {"x": 1}), b'{"table": "llm_calls"}\n', *good[4:]]
    path.write_bytes(b"".join(lines) + b'{"table": "llm_calls", "row": {"call_')  # a line cut by a crash
    caplog.set_level(logging.WARNING, logger=JOURNAL_LOGGER)
    report = ingest_journals(journal, _store(tmp_path))
    target = journal / QUARANTINE_DIR / path.name
    assert report.moved == 9 and report.quarantined_lines == 5 and report.quarantined == (target,)
    assert sorted(target.read_bytes().splitlines(keepends=True)) == sorted(lines[4:9])
    assert not path.exists()
    assert str(target) in caplog.text and "5 journal line(s)" in caplog.text
    assert _store(tmp_path).query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == 9


def test_a_locked_store_is_not_a_bad_row_and_leaves_the_journal(tmp_path, monkeypatch):
    journal = tmp_path / "journal"
    journal.mkdir()
    path = journal / "1-a.jsonl"
    path.write_bytes(journal_line("llm_calls", _call_row("c1")))

    def locked(self, table, rows):
        raise duckdb.IOException("IO Error: Could not set lock on file")

    monkeypatch.setattr(LineageStore, "append", locked)
    with pytest.raises(duckdb.IOException):
        ingest_journals(journal, _store(tmp_path))
    assert path.exists() and not (journal / QUARANTINE_DIR).exists()


# ------------------------------------------------------------------ 2. size and depth bounds


def test_a_deeply_nested_reply_is_an_error_outcome_and_never_cached(tmp_path):
    hostile = _client(tmp_path, ScriptedFakeBackend(lambda r: DEEP))
    reply = _ask(hostile)
    hostile.close()
    assert not reply.ok and reply.json() is None and reply.tool_calls() == []
    assert "max_reply_depth 64" in reply.error and "depth 40000" in reply.error
    [call] = _calls(tmp_path)
    assert call["outcome"] == "error" and "max_reply_depth" in call["error"] and call["output_tokens"] == 5
    assert _cached(tmp_path) == 0 and hostile.stats.errors == 1
    healthy = ScriptedFakeBackend(lambda r: {"answer": 1})
    rerun = _client(tmp_path, healthy)
    assert _ask(rerun).json() == {"answer": 1} and len(healthy.requests) == 1
    rerun.close()


def test_deep_tool_call_arguments_are_an_error_outcome(tmp_path):
    client = _client(tmp_path, ScriptedFakeBackend(lambda r: _tool_reply("f", '{"a": ' + "[" * 70 + "]" * 70 + "}")))
    reply = _ask(client)
    client.close()
    assert not reply.ok and "tool call 0 arguments has JSON depth 71" in reply.error
    assert _cached(tmp_path) == 0


def test_reply_bounds_come_from_the_environment_when_the_client_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNET_MAX_REPLY_CHARS", "50")
    monkeypatch.setenv("MAGNET_MAX_REPLY_DEPTH", "3")
    answers = iter(["x" * 51, "[[[[1]]]]", "[[[1]]]", "y" * 50])
    client = _client(tmp_path, ScriptedFakeBackend(lambda r: next(answers)))
    replies = [_ask(client, LLMRequest(messages=[{"role": "user", "content": str(i)}])) for i in range(4)]
    client.close()
    assert [r.ok for r in replies] == [False, False, True, True]
    assert "51 characters" in replies[0].error and "max_reply_chars 50" in replies[0].error
    assert "depth 4 > max_reply_depth 3" in replies[1].error
    assert [c["outcome"] for c in _calls(tmp_path)] == ["error", "error", "ok", "ok"] and _cached(tmp_path) == 2


def test_content_and_tool_call_arguments_count_together_against_max_reply_chars(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNET_MAX_REPLY_CHARS", "40")
    client = _client(tmp_path, ScriptedFakeBackend(lambda r: _tool_reply("f", '{"a": "' + "x" * 20 + '"}', "y" * 15)))
    reply = _ask(client)
    client.close()
    assert not reply.ok and "44 characters" in reply.error and _cached(tmp_path) == 0


def test_a_poisoned_cache_entry_is_a_miss_and_is_replaced_by_a_fresh_answer(tmp_path):
    store = _store(tmp_path)
    store.append("llm_cache", [{**_cache_row(cache_key("fake", "scripted-fake", REQ), DEEP)}])
    healthy = ScriptedFakeBackend(lambda r: {"answer": 2})
    client = _client(tmp_path, healthy)
    reply = _ask(client)
    client.close()
    assert reply.ok and not reply.cache_hit and reply.json() == {"answer": 2} and len(healthy.requests) == 1
    later = _client(tmp_path, ScriptedFakeBackend(lambda r: "unused"))
    assert _ask(later).cache_hit and _ask(later).json() == {"answer": 2}
    later.close()


def test_a_poisoned_entry_only_out_of_todays_bounds_is_kept_when_not_replaced(tmp_path, monkeypatch):
    _store(tmp_path).append("llm_cache", [_cache_row(cache_key("fake", "scripted-fake", REQ), "[[[[1]]]]")])
    monkeypatch.setenv("MAGNET_MAX_REPLY_DEPTH", "2")
    failing = ScriptedFakeBackend(lambda r: "[[[[[1]]]]]")
    client = _client(tmp_path, failing)
    assert not _ask(client).ok and len(failing.requests) == 1
    client.close()
    assert _cached(tmp_path) == 1


def test_batch_answers_out_of_bounds_are_not_remembered(tmp_path):
    backend = ScriptedFakeBackend(lambda r: "online")
    client = _client(tmp_path, backend)
    client.remember({cache_key("fake", "scripted-fake", REQ): RawReply({"role": "assistant", "content": DEEP})})
    reply = _ask(client)
    client.close()
    assert reply.content == "online" and len(backend.requests) == 1


# ------------------------------------------------------------------ 3. request timeout


class HangingServer:
    """A loopback server that reads each request and never answers until the test ends."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.seen += 1
                outer.release.wait(10)  # bounded: the test sets it on exit

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    server.thread.start()
    yield server
    server.release.set()
    server.httpd.shutdown()
    server.httpd.server_close()


def test_backends_take_their_timeout_from_the_environment(monkeypatch):
    from magnet_dagster.llm.gemini_backend import GeminiBackend

    monkeypatch.setenv("MAGNET_LLM_TIMEOUT_S", "7.5")
    assert OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m").timeout_s == 7.5
    assert GeminiBackend(model="g").timeout_s == 7.5
    assert OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m", timeout_s=3).timeout_s == 3
    monkeypatch.delenv("MAGNET_LLM_TIMEOUT_S")
    assert OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m").timeout_s == 120.0


def test_a_hanging_teacher_times_out_at_magnet_llm_timeout_s(tmp_path, monkeypatch, hanging):
    monkeypatch.setenv("MAGNET_LLM_TIMEOUT_S", "0.3")
    backend = OpenAICompatibleBackend(hanging.url + "/v1", "m", max_attempts=2, max_backoff_s=0.05)
    client = _client(tmp_path, backend)
    started = time.monotonic()
    reply = asyncio.run(client.chat(REQ))
    elapsed = time.monotonic() - started
    client.close()
    assert not reply.ok and "Timeout" in reply.error
    assert elapsed < 3.0 and hanging.seen == 2
    assert [c["outcome"] for c in _calls(tmp_path)] == ["error"]


def test_a_hanging_gemini_endpoint_times_out_at_magnet_llm_timeout_s(tmp_path, monkeypatch, hanging):
    from google.oauth2.credentials import Credentials

    from magnet_dagster.llm.gemini_backend import GeminiBackend

    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT",
                 "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("MAGNET_LLM_TIMEOUT_S", "0.3")
    backend = GeminiBackend(model="gemini-2.5-flash", project="p", location="us-central1",
                            base_url=hanging.url + "/", credentials=Credentials(token="fake-token"),
                            max_attempts=1, retry_initial_delay_s=0.01)

    async def main() -> LLMReply:
        client = _client(tmp_path, backend)
        try:
            return await client.chat(REQ)
        finally:
            await client.aclose()

    started = time.monotonic()
    reply = asyncio.run(main())
    assert not reply.ok and "Timeout" in reply.error
    assert time.monotonic() - started < 3.0 and hanging.seen >= 1
    assert [c["outcome"] for c in _calls(tmp_path)] == ["error"]
