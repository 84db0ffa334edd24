"""Export rows load as training rows, reach TRL unchanged, and bad rows fail naming file, line and rule."""

from __future__ import annotations

import json
import os
import re
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest

from magnet_dagster.training.data import (
    TrainingDataError,
    load_training_rows,
    preference_dataset,
    sft_dataset,
)
from tests.training.tiny_model import (
    CALLS,
    MATH_TOOLS,
    TICKET_TOOLS,
    preference_rows,
    sft_rows,
    tiny_tokenizer,
    write_export,
    write_jsonl,
)

_TOOL_CALL = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.S)
_TOOLS = re.compile(r"<tools>\n(.*?)\n</tools>", re.S)


def _rendered_calls(text: str) -> list[tuple[str, Any]]:
    return [(c["name"], c["arguments"]) for c in map(json.loads, _TOOL_CALL.findall(text))]


def test_rows_of_one_split_with_ids_files_and_arguments_as_objects(tmp_path):
    export = write_export(tmp_path / "demo")
    rows = load_training_rows([export])
    assert rows.split == "train"
    assert rows.trajectory_ids == ["t_math", "t_tickets"]
    assert rows.pair_ids == ["pair_math", "pair_tickets"]
    assert rows.files == (export / "sft.jsonl", export / "preference.jsonl")
    assert (rows.sft[1].source, rows.sft[1].line) == (export / "sft.jsonl", 2)
    for row in rows.sft:
        calls = [
            (tc["function"]["name"], tc["function"]["arguments"])
            for m in row.messages
            for tc in m.get("tool_calls") or []
        ]
        assert calls == CALLS[row.trajectory_id]  # the JSON string and the object form alike
    assert load_training_rows([export], split="test").trajectory_ids == ["t_held_out"]
    assert load_training_rows([write_export(tmp_path / "sft_only", preference=False)]).preference == ()


def test_datasets_render_exactly_the_arguments_and_tools_each_row_was_written_with(tmp_path):
    """One function's argument names never leak into another's call as nulls, numbers keep their
    digits (0.6 stays 0.6), and each row renders with its own tool schemas."""
    rows = load_training_rows([write_export(tmp_path / "demo")])
    tokenizer = tiny_tokenizer()
    tools_of = {"t_math": MATH_TOOLS, "t_tickets": TICKET_TOOLS}
    for example in sft_dataset(rows.sft):
        text = tokenizer.apply_chat_template(example["messages"], tools=example["tools"], tokenize=False)
        turns = text.split("<|im_end|>\n", 1)[1]  # after the system prompt and its call format example
        assert _rendered_calls(turns) == CALLS[example["trajectory_id"]]
        assert '"a": 0.6' in text or example["trajectory_id"] != "t_math"
        (block,) = _TOOLS.findall(text)
        assert [json.loads(line) for line in block.splitlines()] == tools_of[example["trajectory_id"]]
    written = {r["pair_id"]: r for r in preference_rows()}
    for example in preference_dataset(rows.preference):
        want = written[example["pair_id"]]
        for side in ("chosen", "rejected"):
            text = tokenizer.apply_chat_template(
                example["prompt"] + example[side], tools=example["tools"], tokenize=False
            )
            completion = text.split("<|im_start|>assistant\n")[-1]
            expected = [
                (tc["function"]["name"], tc["function"]["arguments"]) for tc in want[side][0].get("tool_calls") or []
            ]
            expected = [(n, json.loads(a) if isinstance(a, str) else a) for n, a in expected]
            assert _rendered_calls(completion) == expected, side


GOOD_SFT = sft_rows()[0]
GOOD_PAIR = preference_rows()[0]


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


def _with_call_arguments(row: dict[str, Any], key: str, arguments: Any) -> dict[str, Any]:
    messages = [dict(m) for m in row[key]]
    i = next(i for i, m in enumerate(messages) if m.get("tool_calls"))
    tc = messages[i]["tool_calls"][0]
    messages[i]["tool_calls"] = [{**tc, "function": {**tc["function"], "arguments": arguments}}]
    return {**row, key: messages}


@pytest.mark.parametrize(
    ("file", "line2", "rule"),
    [
        ("sft.jsonl", "{not json", "not valid JSON"),
        ("sft.jsonl", "[1, 2]", "a row must be a JSON object"),
        ("sft.jsonl", _without(GOOD_SFT, "messages"), "`messages` must be a non-empty list"),
        ("sft.jsonl", {**GOOD_SFT, "messages": []}, "`messages` must be a non-empty list"),
        ("sft.jsonl", _without(GOOD_SFT, "trajectory_id"), "`trajectory_id` must be a non-empty string"),
        ("sft.jsonl", {**GOOD_SFT, "split": "dev"}, "`split` must be one of"),
        ("sft.jsonl", {**GOOD_SFT, "tools": {"add": {}}}, "`tools` must be a list"),
        ("sft.jsonl", {**GOOD_SFT, "messages": [{"role": "robot", "content": "hi"}]}, "`role` must be one of"),
        ("sft.jsonl", {**GOOD_SFT, "messages": GOOD_SFT["messages"][:2]}, "no assistant message"),
        ("sft.jsonl", _with_call_arguments(GOOD_SFT, "messages", '{"a": '), "`function.arguments` is not valid JSON"),
        ("sft.jsonl", _with_call_arguments(GOOD_SFT, "messages", [1, 2]), "`function.arguments` must be a JSON object"),
        ("preference.jsonl", _without(GOOD_PAIR, "pair_id"), "`pair_id` must be a non-empty string"),
        ("preference.jsonl", _without(GOOD_PAIR, "rejected"), "`rejected` must be a non-empty list"),
        ("preference.jsonl", {**GOOD_PAIR, "rejected": GOOD_PAIR["chosen"]}, "are the same turn"),
        ("preference.jsonl", {**GOOD_PAIR, "prompt": GOOD_SFT["messages"][:3]}, "`prompt` must end before"),
    ],
)
def test_a_malformed_row_fails_naming_file_line_and_rule(tmp_path, file, line2, rule):
    export = write_export(tmp_path / "demo")
    path = export / file
    first = path.read_text(encoding="utf-8").splitlines()[0]
    path.write_text(first + "\n" + (line2 if isinstance(line2, str) else json.dumps(line2)) + "\n", encoding="utf-8")
    with pytest.raises(TrainingDataError) as err:
        load_training_rows([export])
    assert str(err.value).startswith(f"{path}:2"), err.value
    assert rule in str(err.value)


def test_a_missing_export_or_a_repeated_id_fails_clearly(tmp_path):
    with pytest.raises(TrainingDataError, match=r"nowhere/sft\.jsonl: no such file"):
        load_training_rows([tmp_path / "nowhere"])
    export = write_export(tmp_path / "demo")
    with pytest.raises(TrainingDataError, match=r"sft\.jsonl:1: duplicate trajectory_id 't_math' \(first at "):
        load_training_rows([export, export])
    write_jsonl(tmp_path / "other" / "sft.jsonl", sft_rows()[1:2])
    with pytest.raises(TrainingDataError, match="duplicate trajectory_id 't_tickets'"):
        load_training_rows([export, tmp_path / "other"])
    with pytest.raises(TrainingDataError, match="unknown split"):
        load_training_rows([export], split="dev")
