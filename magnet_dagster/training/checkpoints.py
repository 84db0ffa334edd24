"""Where student checkpoints live and how each is named when served.

A checkpoint is a Hugging Face model directory under `$MAGNET_HOME/checkpoints/<name>/`
(`base` is the packaged GGUF converted; a training run writes its own name), or any path a
user gives. Its served name carries a fingerprint of the weights, so the LLM cache never
answers a retrained checkpoint with the replies of the one it replaced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from magnet_dagster import config

BASE = "base"
#: written beside the weights by the project (conversion or training): what made the checkpoint
PROVENANCE_FILE = "magnet_checkpoint.json"


def checkpoints_dir() -> Path:
    return config.magnet_home() / "checkpoints"


def checkpoint_path(name_or_path: str | Path) -> Path:
    """A bare name is a directory under `checkpoints_dir()`; anything with a slash is a path."""
    text = str(name_or_path)
    if "/" in text or text.startswith("."):
        return Path(text).expanduser().resolve()
    return checkpoints_dir() / text


#: files a complete checkpoint has, and one of the weight files it must have
CHECKPOINT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def is_checkpoint(path: Path) -> bool:
    """Whether `path` holds a complete Hugging Face causal-LM checkpoint (config, weights, tokenizer)."""
    return all((path / name).is_file() for name in CHECKPOINT_FILES) and any(
        (path / name).is_file() for name in WEIGHT_FILES
    )


def fingerprint(path: Path) -> str:
    """Eight hex digits from the weight files' names, sizes and modification times: cheap (no
    reading of gigabytes) and changed by every rewrite of the weights."""
    digest = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")):
        stat = f.stat()
        digest.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:8]


def served_name(path: Path) -> str:
    """`<directory name>@<fingerprint>`: the model name the vLLM server answers to and the
    lineage records (`eval_results.student_model`)."""
    return f"{path.name}@{fingerprint(path)}"


def write_provenance(path: Path, facts: dict[str, Any]) -> None:
    (path / PROVENANCE_FILE).write_text(json.dumps(facts, indent=2, default=str) + "\n", encoding="utf-8")


def read_provenance(path: Path) -> dict[str, Any]:
    f = path / PROVENANCE_FILE
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
