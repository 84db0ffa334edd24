"""The embedded server's command line: the project's flags, then the user's own (they win)."""

from __future__ import annotations

from pathlib import Path

import pytest

from magnet_dagster.llm import local_server


def test_extra_flags_come_last_and_the_slots_follow_the_setting(tmp_path, monkeypatch):
    binary = tmp_path / "llama-server"
    binary.write_text("")
    monkeypatch.setenv("MAGNET_LLAMA_SERVER", str(binary))
    monkeypatch.setenv("MAGNET_LOCAL_ARGS", "--spec-type ngram-mod --threads '2'")
    monkeypatch.setenv("MAGNET_LOCAL_PARALLEL", "3")
    command = local_server.llama_server_command(Path("/m/Model.Q4_1.BF16.gguf"), 8123)
    assert command[0] == str(binary)
    assert command[command.index("--alias") + 1] == "Model.Q4_1.BF16"
    assert command[command.index("--parallel") + 1] == "3"
    assert command[-4:] == ["--spec-type", "ngram-mod", "--threads", "2"]


def test_a_bad_slot_count_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("MAGNET_LOCAL_PARALLEL", "eight")
    with pytest.raises(ValueError, match="MAGNET_LOCAL_PARALLEL='eight'"):
        local_server.parallel_slots()


@pytest.mark.parametrize(
    "variable, lookup", [("MAGNET_LOCAL_GGUF", "default_gguf"), ("MAGNET_LLAMA_SERVER", "server_binary")]
)
def test_a_named_file_that_is_not_there_is_refused_by_variable(tmp_path, monkeypatch, variable, lookup):
    monkeypatch.setenv(variable, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=f"{variable}=.*missing is not a file"):
        getattr(local_server, lookup)()
