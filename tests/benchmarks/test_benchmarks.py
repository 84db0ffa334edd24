"""The benchmarks run end to end on small settings (their numbers are read from `make bench`, not asserted)."""

import asyncio

import openai

from benchmarks import cache_startup, evaluation, graph_building, llm_client
from benchmarks.fixed_latency_server import fixed_latency_server


def test_fixed_latency_server_answers_and_counts():
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    with fixed_latency_server(0.05) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        reply = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "ok"
        gemini = genai.Client(vertexai=True, project="p", location="us-central1", credentials=Credentials(token="t"),
                              http_options=types.HttpOptions(base_url=server.root_url))
        assert gemini.models.generate_content(model="gemini-2.5-flash", contents="hi").text == "ok"
        assert server.requests() == 2


def test_llm_client_benchmark_runs_and_its_cache_rerun_makes_no_request(capsys):
    assert llm_client.main(["--concurrency", "8", "--waves", "3", "--reference-waves", "1", "--latency-ms", "20",
                            "--repeats", "1", "--sequential-requests", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("0 new server requests") == 2 and "of ideal" in out


def test_cache_startup_benchmark_runs(capsys):
    assert cache_startup.main(["--cached", "3000", "--calls", "200", "--sequential", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "3,000 cached answers" in out and "start-up, open()" in out and "the old whole-cache load" in out


def test_evaluation_and_graph_benchmarks_run(capsys):
    assert evaluation.main(["--conversations", "6", "--latency-ms", "10", "--repeats", "1"]) == 0
    assert graph_building.main(["--functions", "300", "--categories", "5", "--repeats", "1",
                                "--naive-sample", "20"]) == 0
    out = capsys.readouterr().out
    assert "x sequential" in out and "LLM calls for judging: 300" in out


def test_embedded_server_stage_table_reads_the_latest_run_of_each_stage(tmp_path, capsys):
    from datetime import datetime, timedelta

    from benchmarks.embedded_server import stage_table
    from magnet_dagster.store.lineage import LineageStore

    store = LineageStore(tmp_path / "lineage.duckdb")
    t0 = datetime(2026, 1, 1)

    def call(n: int, asset: str, run: str, second: float, hit: bool = False) -> dict:
        return {"call_id": f"c{n}", "tool_set": "demo", "run_id": run, "asset": asset, "backend": "local",
                "model": "m", "cache_key": f"k{n}", "prompt_hash": "h", "input_tokens": 0 if hit else 100,
                "output_tokens": 0 if hit else 10, "latency_ms": 0.0 if hit else 1000.0, "cache_hit": hit,
                "outcome": "ok", "error": None, "created_at": t0 + timedelta(seconds=second)}

    store.append("llm_calls", [
        call(1, "function_graph", "old", 1), call(2, "function_graph", "old", 2),  # an earlier run: ignored
        call(3, "function_graph", "new", 101), call(4, "function_graph", "new", 103),
        call(5, "queries", "new", 110), call(6, "queries", "new", 117, hit=True),
    ])
    stage_table(store, "demo")
    out = capsys.readouterr().out
    graph = next(line for line in out.splitlines() if "function_graph" in line).split()
    queries = next(line for line in out.splitlines() if line.strip().startswith("queries")).split()
    assert graph[1:5] == ["2", "2", "200", "20"] and graph[6] == "3.0"  # 100 s - 1 s latency .. 103 s
    assert queries[1:5] == ["2", "1", "100", "10"] and queries[6] == "8.0"
