"""The benchmarks run end to end on small settings (their numbers are read from `make bench`, not asserted)."""

import asyncio

import openai

from benchmarks import evaluation, graph_building, llm_client
from benchmarks.fixed_latency_server import fixed_latency_server


def test_fixed_latency_server_answers_and_counts():
    with fixed_latency_server(0.05) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        reply = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "ok"
        assert server.requests() == 1


def test_llm_client_benchmark_runs_and_its_cache_rerun_makes_no_request(capsys):
    assert llm_client.main(["--requests", "40", "--concurrency", "8", "--latency-ms", "20", "--repeats", "1",
                            "--sequential-requests", "5"]) == 0
    assert "0 new server requests" in capsys.readouterr().out


def test_evaluation_and_graph_benchmarks_run(capsys):
    assert evaluation.main(["--conversations", "6", "--latency-ms", "10", "--repeats", "1"]) == 0
    assert graph_building.main(["--functions", "300", "--categories", "5", "--repeats", "1",
                                "--naive-sample", "20"]) == 0
    out = capsys.readouterr().out
    assert "x sequential" in out and "LLM calls for judging: 300" in out
