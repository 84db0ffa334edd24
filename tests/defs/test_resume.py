"""A materialization killed halfway and run again repays nothing that finished (real local server),
with the lineage in the DuckDB file and in the shared Postgres store (`MAGNET_LINEAGE_URL`)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from magnet_dagster.store.lineage import LINEAGE_URL_ENV, open_lineage_store
from tests.conftest import ROOT, write_tiny_bfcl_tool_set

pytestmark = pytest.mark.integration


def _journal_lines(home: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (home / "llm_journal").glob("*.jsonl"))


@pytest.fixture(params=["duckdb", "postgres"])
def lineage_env(request, monkeypatch) -> dict[str, str]:
    """Both lineage stores: the DuckDB file under MAGNET_HOME, and the shared Postgres store."""
    monkeypatch.delenv(LINEAGE_URL_ENV, raising=False)
    if request.param == "duckdb":
        return {}
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv(LINEAGE_URL_ENV, url)
    return {LINEAGE_URL_ENV: url}


def test_killed_then_rerun_materialization_makes_no_repeated_request(tmp_path, magnet_home, tool_sets_dir,
                                                                      lineage_env):
    write_tiny_bfcl_tool_set(tool_sets_dir, "resume", ["add", "multiply", "square_root", "round_number"], seed=5)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = os.environ | lineage_env | {"DAGSTER_HOME": str(dagster_home), "MAGNET_HOME": str(magnet_home),
                                      "MAGNET_TOOL_SETS_DIR": str(tool_sets_dir)}
    subprocess.run([sys.executable, "-m", "magnet_dagster.defs.cli", "add", "resume"], env=env, cwd=ROOT, check=True)
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "magnet_dagster.definitions",
           "--select", "group:magnet_pipeline", "--partition", "resume"]

    first = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 600
    while _journal_lines(magnet_home) < 12 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert first.poll() is None, "the first run finished before it could be killed; make the tool set bigger"
    os.killpg(first.pid, signal.SIGKILL)  # the run and its llama.cpp server, no clean-up at all
    first.wait()
    assert _journal_lines(magnet_home) >= 12, "calls made before the kill are in the journal"

    second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    store = open_lineage_store()
    repeated = store.query(
        "SELECT cache_key, count(*) AS n FROM llm_calls WHERE NOT cache_hit AND outcome = 'ok' "
        "GROUP BY cache_key HAVING count(*) > 1")
    assert repeated == [], "a request paid for before the kill was paid for again"
    runs = store.query("SELECT count(DISTINCT run_id) AS n, sum(cache_hit::INT) AS hits FROM llm_calls")[0]
    assert runs["n"] == 2 and runs["hits"] > 0, runs
