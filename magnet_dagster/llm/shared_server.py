"""One server process shared by every process that works on one `MAGNET_HOME`.

Two runs at once (a sensor launching two new tool sets, a step per process under Dagster's
multiprocess executor) would otherwise start a llama.cpp server each, and two servers that each
take every core spin against each other at their barriers: on 2 cores a 6-minute pair of runs
was seen to take over 20. One server with parallel slots batches both runs' requests instead.

The server runs under a small keeper process (`python -m magnet_dagster.llm.shared_server`)
found through a record file. A process using it holds a shared `flock` on a users file; the
kernel drops that lock when the process ends, however it ends, so the keeper stops the server
once nobody has held it for `idle_s` (a grace that lets the next step of a run reuse a warm
server). The server dies with its keeper (`PR_SET_PDEATHSIG`), so nothing outlives them both.
A lock file orders starting, attaching and stopping.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from magnet_dagster.llm.server_process import ServerProcess, answers, free_port

#: seconds a server with no user is kept for the next one; `MAGNET_LOCAL_IDLE_S` overrides
DEFAULT_IDLE_S = 10.0
#: how often the keeper looks for users
POLL_S = 0.5


def idle_seconds() -> float:
    value = os.environ.get("MAGNET_LOCAL_IDLE_S", str(DEFAULT_IDLE_S))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f"MAGNET_LOCAL_IDLE_S={value!r}: a number of seconds, at least 0")
    return seconds


@dataclass(frozen=True)
class Paths:
    lock: Path
    users: Path
    record: Path

    @classmethod
    def of(cls, run_dir: Path, key: str) -> Paths:
        return cls(run_dir / f"{key}.lock", run_dir / f"{key}.users", run_dir / f"{key}.json")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _has_users(users: Path) -> bool:
    with open(users, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


def _read_record(record: Path) -> dict | None:
    try:
        value = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("port"), int) else None


def _alive(record: dict) -> bool:
    try:
        os.kill(int(record["keeper_pid"]), 0)
    except (OSError, KeyError, ValueError, TypeError):
        return False
    return answers(record["port"])


@dataclass
class Lease:
    """A hold on a shared server: `base_url` answers until `close()` (or this process's end)."""

    port: int
    _users: IO[str] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        if self._users is not None:
            self._users.close()  # drops the shared lock; the keeper stops the server when none is left
            self._users = None


def lease(
    run_dir: Path,
    key: str,
    command: Callable[[int], list[str]],
    log_path: Path | None = None,
    startup_timeout_s: float = 180.0,
    idle_s: float | None = None,
) -> Lease:
    """Hold the server `key` under `run_dir`, starting it (`command(port)`) if none answers.

    A failed start raises `ServerStartError` naming the log, as a private server's would."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = Paths.of(run_dir, key)
    with _locked(paths.lock):
        record = _read_record(paths.record)
        if record is None or not _alive(record):
            port = free_port()
            server_command = command(port)
            keeper = ServerProcess(
                command=[
                    sys.executable,
                    "-m",
                    __name__,
                    "--lock",
                    str(paths.lock),
                    "--users",
                    str(paths.users),
                    "--record",
                    str(paths.record),
                    "--idle-s",
                    str(idle_seconds() if idle_s is None else idle_s),
                    "--",
                    *server_command,
                ],
                port=port,
                log_path=log_path,
                startup_timeout_s=startup_timeout_s,
                name=server_command[0],
                new_session=True,  # a Ctrl-C meant for one run must not stop another run's server
            ).start()
            assert keeper.process is not None
            record = {"port": port, "keeper_pid": keeper.process.pid, "command": server_command}
            paths.record.write_text(json.dumps(record))
        users = open(paths.users, "a")  # held for the lease's life
        fcntl.flock(users.fileno(), fcntl.LOCK_SH)
    return Lease(record["port"], users)


def _die_with_parent() -> None:
    """In the server's child: SIGTERM when the keeper dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def keep(paths: Paths, idle_s: float, command: list[str]) -> int:
    """Run `command` until nobody has held `paths.users` for `idle_s` seconds; its exit code."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = subprocess.Popen(command, preexec_fn=_die_with_parent)  # output goes to the keeper's log
    print(f"shared_server: keeper {os.getpid()} started {Path(command[0]).name} (pid {server.pid})", flush=True)
    idle_since: float | None = None
    try:
        while True:
            try:
                server.wait(timeout=POLL_S)
                break  # it ended by itself (a failed start waits for this, not for the lock its starter holds)
            except subprocess.TimeoutExpired:
                pass
            with _locked(paths.lock):
                if _has_users(paths.users):
                    idle_since = None
                    continue
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= idle_s:
                    _forget(paths.record)
                    break
    finally:
        _forget(paths.record)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(f"shared_server: keeper {os.getpid()} stopped {Path(command[0]).name} (exit {server.returncode})", flush=True)
    return server.returncode if server.returncode and server.returncode > 0 else 0


def _forget(record: Path) -> None:
    """Remove the record if it still names this keeper (a later keeper may have replaced it)."""
    current = _read_record(record)
    if current is not None and current.get("keeper_pid") == os.getpid():
        record.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--users", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--idle-s", type=float, default=DEFAULT_IDLE_S)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("the server command follows --")
    return keep(Paths(args.lock, args.users, args.record), args.idle_s, command)


if __name__ == "__main__":
    sys.exit(main())
