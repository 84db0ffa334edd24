"""The packaged GGUF re-encoded once per machine: the choice by CPU and setting, the one-time
conversion (a stand-in `llama-quantize` script here, so these run in milliseconds), and the real
`llama-quantize` turning the packaged Q4_1 file into BF16 (integration)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from magnet_dagster.llm import local_server, reencode

# A stand-in for llama-quantize: `--allow-requantize SRC DST TYPE`; copies SRC to DST, counts its runs.
STAND_IN = """#!/bin/sh
echo run >> "$(dirname "$0")/runs"
sleep 0.2
cp "$2" "$3"
"""

FAILING = """#!/bin/sh
echo "llama_model_quantize: failed to quantize: disk full" >&2
echo partial > "$3"
exit 1
"""


def _script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bin" / "llama-quantize"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "wheel" / "Model.Q4_1.gguf"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"GGUF" + bytes(64))
    return source


def test_cpu_flags_come_from_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert reencode.cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert reencode.cpu_flags(tmp_path / "missing") == set()


def test_bf16_is_chosen_by_the_cpu_unless_the_setting_says(monkeypatch):
    assert reencode.wants_bf16("auto", {"avx2", "avx512_bf16"})
    assert not reencode.wants_bf16("auto", {"avx2", "avx512f"})
    assert reencode.wants_bf16("1", set())
    assert not reencode.wants_bf16("0", {"avx512_bf16"})
    monkeypatch.setenv("MAGNET_LOCAL_BF16", "yes")
    with pytest.raises(ValueError, match="MAGNET_LOCAL_BF16='yes'"):
        reencode.wants_bf16()


def test_a_gguf_the_user_names_is_served_as_it_is(tmp_path, monkeypatch):
    source = _source(tmp_path)
    monkeypatch.setenv("MAGNET_LOCAL_GGUF", str(source))
    monkeypatch.setenv("MAGNET_LOCAL_BF16", "1")
    assert local_server.served_gguf() == source


def test_the_conversion_runs_once_and_is_reused(tmp_path):
    quantize, source = _script(tmp_path, STAND_IN), _source(tmp_path)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(reencode.reencoded(source, "BF16", quantize, tmp_path / "c")))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and results[0].name == "Model.Q4_1.BF16.gguf"
    assert results[0].read_bytes() == source.read_bytes()
    assert (quantize.parent / "runs").read_text().count("run") == 1
    assert reencode.reencoded(source, "BF16", quantize, tmp_path / "c") == results[0]
    assert [p.name for p in results[0].parent.iterdir() if p.suffix == ".partial"] == []


def test_a_changed_source_is_converted_again(tmp_path):
    quantize, source = _script(tmp_path, STAND_IN), _source(tmp_path)
    first = reencode.reencoded(source, "BF16", quantize, tmp_path / "c")
    source.write_bytes(b"GGUF" + bytes(128))
    os.utime(source, ns=(1, 1))
    second = reencode.reencoded(source, "BF16", quantize, tmp_path / "c")
    assert second != first and second.read_bytes() == source.read_bytes()


def test_a_failed_conversion_names_the_command_and_leaves_nothing(tmp_path):
    quantize, source = _script(tmp_path, FAILING), _source(tmp_path)
    with pytest.raises(RuntimeError) as err:
        reencode.reencoded(source, "BF16", quantize, tmp_path / "c")
    message = str(err.value)
    assert str(source) in message and "exit 1" in message and "disk full" in message
    assert "MAGNET_LOCAL_BF16=0" in message
    assert [p for p in (tmp_path / "c").rglob("*.gguf*")] == []


def test_a_missing_quantize_binary_says_how_to_get_one_or_do_without(tmp_path, monkeypatch):
    server = tmp_path / "llama-server"
    server.write_text("")
    monkeypatch.setenv("MAGNET_LLAMA_SERVER", str(server))
    monkeypatch.setenv("MAGNET_LOCAL_BF16", "1")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("MAGNET_LOCAL_GGUF", raising=False)
    with pytest.raises(
        FileNotFoundError, match=r"llama-quantize is not installed in .*make install.*MAGNET_LOCAL_BF16=0"
    ):
        local_server.served_gguf()


@pytest.mark.integration
def test_llama_quantize_turns_the_packaged_gguf_into_bf16(tmp_path):
    gguf = pytest.importorskip("gguf")
    source = local_server.default_gguf()
    quantize = local_server.llama_tool("llama-quantize", local_server.server_binary().parent, "")
    target = reencode.reencoded(source, "BF16", quantize, tmp_path)
    assert target.name == f"{source.stem}.BF16.gguf"
    types = {t.tensor_type.name for t in gguf.GGUFReader(target).tensors}
    assert "BF16" in types and "Q4_1" not in types
