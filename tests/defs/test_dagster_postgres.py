"""The Dagster instance in Postgres, under the daemon: the sensor turns two dropped-in tool sets into
two queued runs, the run queue lets them through one at a time, and both partitions materialize.

A real local PostgreSQL server (tests/postgres_server.py) holds the instance (the repo's own
dagster.postgres.yaml, with the DAGSTER_PG_* variables) and, as on a cluster, the shared lineage store
(MAGNET_LINEAGE_URL). `dagster-daemon run` is a real subprocess: its sensor daemon evaluates
`tool_set_sensor`, its run coordinator dequeues, its run launcher starts each run in its own
process. Teacher and student are the schema-following fake (tests/fake_teacher.py, a fake, named
as one) served as an OpenAI-compatible endpoint on loopback, so the whole pipeline runs in seconds
per partition: this test is about Dagster, not the model (the real llama.cpp path is
tests/defs/test_pipeline.py and tests/defs/test_resume.py).
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEventType

from magnet_dagster.defs.jobs import magnet_pipeline
from magnet_dagster.llm.client import LLMRequest
from magnet_dagster.store.lineage import open_lineage_store
from tests.conftest import ROOT, write_tiny_bfcl_tool_set
from tests.fake_teacher import SchemaFollowingFake
from tests.postgres_server import SUPERUSER

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
ASSETS = ["function_catalog", "function_graph", "signature_paths", "queries", "trajectories", "training_splits",
          "student_evaluation"]


class _FakeOpenAI(BaseHTTPRequestHandler):
    """`POST /v1/chat/completions` answered by the schema-following fake (keep-alive, HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    fake = SchemaFollowingFake()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        reply = asyncio.run(self.fake.complete(LLMRequest(body["messages"], body.get("tools"), schema)))
        self._send({"id": "fake", "object": "chat.completion", "model": body.get("model"),
                    "choices": [{"index": 0, "message": reply.message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens}})

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "fake"}]})

    def _send(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def fake_llm_server() -> Iterator[str]:
    """The fake on 127.0.0.1 (a free port) in a thread of this process; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _instance_config(max_concurrent_runs: int) -> str:
    """The repo's dagster.postgres.yaml, with the run queue narrowed so the queue visibly orders runs."""
    config = yaml.safe_load((ROOT / "dagster.postgres.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_db"]["hostname"] == {"env": "DAGSTER_PG_HOST"}
    config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    return yaml.safe_dump(config)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the daemon's process group (it, its code server, its runs), then SIGKILL if needed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_sensor_runs_queue_under_the_daemon_and_both_partitions_materialize(
    tmp_path, postgres, magnet_home, tool_sets_dir, monkeypatch
):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(_instance_config(max_concurrent_runs=1))
    for name, seed in (("alpha", 1), ("beta", 4)):
        write_tiny_bfcl_tool_set(tool_sets_dir, name, ["add", "multiply", "square_root", "round_number"], seed=seed)

    with fake_llm_server() as llm_url:
        env = {"DAGSTER_HOME": str(dagster_home), "DAGSTER_PG_HOST": postgres.host,
               "DAGSTER_PG_PORT": str(postgres.port), "DAGSTER_PG_USERNAME": SUPERUSER, "DAGSTER_PG_PASSWORD": "",
               "DAGSTER_PG_DB": postgres.create_database("dagster"),
               "MAGNET_LINEAGE_URL": postgres.database("lineage"), "MAGNET_HOME": str(magnet_home),
               "MAGNET_TOOL_SETS_DIR": str(tool_sets_dir), "OPENAI_API_KEY": "not-needed"}
        for role in ("TEACHER", "STUDENT"):
            env |= {f"MAGNET_{role}": "openai", f"MAGNET_{role}_BASE_URL": llm_url, f"MAGNET_{role}_MODEL": "fake"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        full_env = os.environ | env
        started = subprocess.run([str(BIN / "dagster"), "sensor", "start", "tool_set_sensor", "-m",
                                  "magnet_dagster.definitions"], env=full_env, cwd=ROOT, capture_output=True,
                                 text=True, timeout=120)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        log = (tmp_path / "daemon.log").open("w")
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-m", "magnet_dagster.definitions"],
                                  env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            with dg.DagsterInstance.get() as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                deadline = time.monotonic() + 280
                runs: list[dg.DagsterRun] = []
                while time.monotonic() < deadline and daemon.poll() is None:
                    runs = list(instance.get_runs(dg.RunsFilter(job_name=magnet_pipeline.name)))
                    if len(runs) == 2 and all(r.is_finished for r in runs):
                        break
                    time.sleep(2)
                log.flush()
                tail = (tmp_path / "daemon.log").read_text()[-3000:]
                assert len(runs) == 2 and all(r.is_finished for r in runs), (
                    [(r.tags.get("dagster/partition"), r.status) for r in runs], tail)
                assert sorted(r.tags["dagster/partition"] for r in runs) == ["alpha", "beta"]
                assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]

                # each run came through the queue (enqueued by the sensor, started by the coordinator) ...
                for run in runs:
                    kinds = {e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event}
                    assert {DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING} <= kinds, kinds
                # ... which let one run at a time through (max_concurrent_runs: 1)
                records = sorted(instance.get_run_records(dg.RunsFilter(job_name=magnet_pipeline.name)),
                                 key=lambda r: r.start_time or 0)
                assert records[1].start_time >= records[0].end_time, "the second run waited for the first"

                for asset in ASSETS:
                    assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {"alpha", "beta"}, asset
                # the LLM steps claimed their pools' slots (default_limit from dagster.postgres.yaml)
                for pool in ("teacher", "student"):
                    assert instance.event_log_storage.get_concurrency_info(pool).slot_count == 2, pool
        finally:
            _stop(daemon)
            log.close()

    store = open_lineage_store()
    for key in ("alpha", "beta"):
        assert store.count("functions", key) == 4
        assert store.count("eval_results", key) > 0, "the shared lineage store holds both partitions"
