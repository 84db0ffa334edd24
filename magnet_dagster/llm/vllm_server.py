"""The production student: `vllm serve` with tool calling, started on loopback when asked.

vLLM is an optional extra (`pip install .[vllm]`); nothing here imports it. Settings:
`MAGNET_STUDENT_MODEL` (a path or a model name vLLM can load), `MAGNET_VLLM_TOOL_PARSER`
(default `hermes`), `MAGNET_VLLM_ARGS` (more flags, shell-split), `MAGNET_VLLM_COMMAND`.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from magnet_dagster.llm.server_process import ServerProcess, free_port


def vllm_command(
    model: str, port: int, tool_parser: str = "hermes", extra: list[str] | None = None, executable: str = "vllm"
) -> list[str]:
    return [
        executable,
        "serve",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        model,
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        tool_parser,
        *(extra or []),
    ]


def start_vllm(model: str, log_path: Path | None = None, startup_timeout_s: float = 1200.0) -> ServerProcess:
    """Start `vllm serve MODEL` and wait for `/v1/models` (model loading can take minutes)."""
    executable = os.environ.get("MAGNET_VLLM_COMMAND", "vllm")
    if shutil.which(executable) is None:
        raise FileNotFoundError(
            f"{executable!r} is not on PATH: `pip install .[vllm]`, or give MAGNET_STUDENT_BASE_URL of a running server"
        )
    port = free_port()
    command = vllm_command(
        model,
        port,
        os.environ.get("MAGNET_VLLM_TOOL_PARSER", "hermes"),
        shlex.split(os.environ.get("MAGNET_VLLM_ARGS", "")),
        executable,
    )
    return ServerProcess(command=command, port=port, startup_timeout_s=startup_timeout_s, log_path=log_path).start()
