"""One server per MAGNET_HOME shared across processes: started once, stopped when its last user
goes (however it goes), never outliving its keeper. The server here is a stand-in HTTP process
(it answers `/v1/models` and records its start), so these run in seconds; the llama.cpp server
goes through the same keeper in the two-partition integration test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from magnet_dagster.llm import shared_server
from magnet_dagster.llm.server_process import ServerStartError

STAND_IN = textwrap.dedent(
    """
    import http.server, os, sys
    port, starts = int(sys.argv[1]), sys.argv[2]
    with open(starts, "a") as f:
        f.write(f"{os.getpid()}\\n")
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b'{"data": []}')
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from magnet_dagster.llm import shared_server
    run_dir, starts, stand_in = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    held = shared_server.lease(run_dir, "stand-in", lambda port: [sys.executable, "-c", stand_in, str(port), starts],
                               idle_s=float(sys.argv[4]))
    print(held.port, flush=True)
    sys.stdin.read()  # hold until told to go
    held.close()
    """
)


def _command(starts: Path):
    return lambda port: [sys.executable, "-c", STAND_IN, str(port), str(starts)]


def _started_pids(starts: Path) -> list[int]:
    return [int(line) for line in starts.read_text().split()] if starts.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _holder(run_dir: Path, starts: Path, idle_s: float = 0.5) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), str(starts), STAND_IN, str(idle_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_two_processes_share_one_server_which_stops_after_the_last_leaves(tmp_path):
    run_dir, starts = tmp_path / "run", tmp_path / "starts"
    first, port1 = _holder(run_dir, starts)
    second, port2 = _holder(run_dir, starts)
    try:
        assert port1 == port2
        assert len(_started_pids(starts)) == 1, "the second process attached to the first one's server"
        server_pid = _started_pids(starts)[0]
        first.communicate("")
        time.sleep(1.5)  # beyond idle_s: the second still holds it
        assert _alive(server_pid), "a server still in use was stopped"
        second.communicate("")
        assert _wait_until(lambda: not _alive(server_pid)), "the server outlived its last user"
        assert not (run_dir / "stand-in.json").exists()
    finally:
        for p in (first, second):
            p.kill()


def test_a_killed_user_releases_its_hold(tmp_path):
    run_dir, starts = tmp_path / "run", tmp_path / "starts"
    proc, _ = _holder(run_dir, starts)
    server_pid = _started_pids(starts)[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _wait_until(lambda: not _alive(server_pid)), "a SIGKILLed user's hold kept the server"


def test_a_killed_keeper_takes_its_server_along_and_the_next_lease_starts_afresh(tmp_path):
    run_dir, starts = tmp_path / "run", tmp_path / "starts"
    held = shared_server.lease(run_dir, "stand-in", _command(starts), idle_s=0.5)
    try:
        record = shared_server._read_record(run_dir / "stand-in.json")
        assert record is not None and record["port"] == held.port
        os.kill(record["keeper_pid"], signal.SIGKILL)
        server_pid = _started_pids(starts)[0]
        assert _wait_until(lambda: not _alive(server_pid)), "the server outlived its keeper"
        again = shared_server.lease(run_dir, "stand-in", _command(starts), idle_s=0.5)
        assert len(_started_pids(starts)) == 2, "a stale record was not trusted"
        again.close()
    finally:
        held.close()


def test_a_server_that_exits_at_start_is_refused_naming_its_log(tmp_path):
    log = tmp_path / "server.log"
    with pytest.raises(ServerStartError) as caught:
        shared_server.lease(tmp_path / "run", "broken",
                            lambda port: [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"],
                            log_path=log, startup_timeout_s=20)
    message = str(caught.value)
    assert str(log) in message and "no model here" in message and sys.executable in message
    assert not (tmp_path / "run" / "broken.json").exists()


def test_idle_seconds_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("MAGNET_LOCAL_IDLE_S", "2.5")
    assert shared_server.idle_seconds() == 2.5
    monkeypatch.setenv("MAGNET_LOCAL_IDLE_S", "soon")
    with pytest.raises(ValueError, match="MAGNET_LOCAL_IDLE_S='soon'"):
        shared_server.idle_seconds()
