"""An OpenAI-compatible server run as a child process on loopback: start, wait, stop.

Shared by the embedded llama.cpp server and the vLLM student server, which differ only in
the command line.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

#: How many of the log's last lines a failed start quotes.
LOG_TAIL_LINES = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    """Whether an OpenAI-compatible server on 127.0.0.1:`port` lists its models."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message names its log and quotes its end."""


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of the log at `path`, indented for quoting in an error message."""
    if path is None:
        return "  (its output was not kept: give a log_path)"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tail = deque(f, maxlen=lines)
    except OSError as exc:
        return f"  (cannot read {path}: {exc})"
    return "".join(f"  | {line}" for line in tail).rstrip("\n") or "  (the log is empty)"


@dataclass
class ServerProcess:
    """A child process serving `/v1` on 127.0.0.1:`port`, ready once `/v1/models` answers."""

    command: list[str]
    port: int
    startup_timeout_s: float = 180.0
    log_path: Path | None = None
    #: the child's environment; None: this process's own
    env: dict[str, str] | None = field(default=None, repr=False)
    #: what error messages call it; None: the command's program
    name: str | None = None
    #: start it in a session of its own, out of reach of signals sent to this one's process group
    new_session: bool = False
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ServerProcess:
        """Start the command and wait until `/v1/models` answers; `ServerStartError` (naming the log
        and quoting its last lines) when it exits first or does not answer within `startup_timeout_s`."""
        if self.log_path:
            with open(self.log_path, "ab") as log:  # the child keeps its own copy of the handle
                self.process = subprocess.Popen(
                    self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=self.new_session
                )
        else:
            self.process = subprocess.Popen(
                self.command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=self.new_session,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(self._failure(f"exited with code {self.process.returncode}"))
            if answers(self.port):
                return
            time.sleep(0.3)
        raise ServerStartError(self._failure(f"did not answer within {self.startup_timeout_s:g} s"))

    def _failure(self, what: str) -> str:
        where = f"log: {self.log_path}" if self.log_path else "no log kept"
        return f"{self.name or self.command[0]} {what} ({where}); its last lines:\n{log_tail(self.log_path)}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
