"""The exports as training rows, and as the datasets TRL's SFT and DPO trainers take.

`load_training_rows` reads `sft.jsonl` and `preference.jsonl` of one or more export
directories (`$MAGNET_HOME/exports/<tool_set>/`), keeps one split, and checks every row: a
malformed row fails with the file, the line and the rule it breaks, since a trainer that
silently skips rows trains on something other than what the lineage says. Each call's
`function.arguments` is handed on as a JSON object (OpenAI's JSON string is decoded), which is
what Hugging Face chat templates expect (they write it with `tojson`).

`sft_dataset` / `preference_dataset` give TRL conversational rows (`messages` + `tools`;
`prompt` / `chosen` / `rejected` + `tools`) as a generator-backed `datasets.IterableDataset`:
the rows reach the trainers as the very Python objects loaded here. Both Arrow routes change
them: an inferred struct gives every call every other function's argument names as nulls
(rendered by `tojson` as `"x": null`), and the `Json()` feature re-encodes numbers through
ujson (ten significant digits, imprecise parsing: 0.6 comes back as 0.6000000000000001),
which would put numbers into the training text that the data never had. TRL's tokenizing
step passes `tools` to `apply_chat_template` as given (and would `json.loads` a string).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `datasets` is in the `train` extra; loading and checking rows does not need it
    import datasets

SFT_FILE = "sft.jsonl"
PREFERENCE_FILE = "preference.jsonl"
SPLITS = ("train", "validation", "test")
ROLES = ("system", "user", "assistant", "tool")


class TrainingDataError(ValueError):
    """A training row (or file) that cannot be trained on; the message names file, line and rule."""


@dataclass(frozen=True)
class SftRow:
    """One positive trajectory: the whole conversation, trained on with SFT."""

    trajectory_id: str
    path_id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    source: Path
    line: int


@dataclass(frozen=True)
class PreferenceRow:
    """One turn-level pair: `prompt` is the conversation up to the turn, `chosen` / `rejected` the turn."""

    pair_id: str
    trajectory_id: str
    error_type: str
    prompt: list[dict[str, Any]]
    chosen: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    source: Path
    line: int


@dataclass(frozen=True)
class TrainingRows:
    """The rows of one split from the given exports, and the files they were read from."""

    split: str
    sft: tuple[SftRow, ...]
    preference: tuple[PreferenceRow, ...]
    files: tuple[Path, ...]

    @property
    def trajectory_ids(self) -> list[str]:
        return [r.trajectory_id for r in self.sft]

    @property
    def pair_ids(self) -> list[str]:
        return [r.pair_id for r in self.preference]


def load_training_rows(export_dirs: Sequence[Path], split: str = "train") -> TrainingRows:
    """The `split` rows of every export directory, in directory then file order.

    Every row of every split is checked (a bad row elsewhere in the file is still a bad file).
    `sft.jsonl` must exist; a missing `preference.jsonl` means no pairs. An id seen twice (the
    same directory given twice, or two exports sharing a trajectory) is an error.
    """
    if split not in SPLITS:
        raise TrainingDataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    sft: list[SftRow] = []
    pref: list[PreferenceRow] = []
    files: list[Path] = []
    seen: dict[str, str] = {}
    for directory in export_dirs:
        directory = Path(directory)
        sft_file = directory / SFT_FILE
        if not sft_file.is_file():
            raise TrainingDataError(f"{sft_file}: no such file (is {directory} an export directory?)")
        files.append(sft_file)
        for line, raw in _json_lines(sft_file):
            row = _sft_row(raw, sft_file, line)
            _unique(seen, f"trajectory_id {row.trajectory_id!r}", f"{sft_file}:{line}")
            if raw["split"] == split:
                sft.append(row)
        pref_file = directory / PREFERENCE_FILE
        if pref_file.is_file():
            files.append(pref_file)
            for line, raw in _json_lines(pref_file):
                pair = _preference_row(raw, pref_file, line)
                _unique(seen, f"pair_id {pair.pair_id!r}", f"{pref_file}:{line}")
                if raw["split"] == split:
                    pref.append(pair)
    return TrainingRows(split, tuple(sft), tuple(pref), tuple(files))


def sft_dataset(rows: Sequence[SftRow]) -> datasets.IterableDataset:
    """TRL's conversational language-modelling rows: `messages`, `tools`, and the row's id."""
    records = tuple({"messages": r.messages, "tools": r.tools, "trajectory_id": r.trajectory_id} for r in rows)
    return _dataset(records)


def preference_dataset(rows: Sequence[PreferenceRow]) -> datasets.IterableDataset:
    """TRL's conversational preference rows: `prompt`, `chosen`, `rejected`, `tools`, and the pair's id."""
    records = tuple(
        {"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected, "tools": r.tools, "pair_id": r.pair_id}
        for r in rows
    )
    return _dataset(records)


def _records(records: tuple[dict[str, Any], ...]) -> Iterator[dict[str, Any]]:
    yield from records


def _dataset(records: tuple[dict[str, Any], ...]) -> datasets.IterableDataset:
    from datasets import IterableDataset

    # a tuple, not a list: `from_generator` splits list-valued gen_kwargs into shards
    return IterableDataset.from_generator(_records, gen_kwargs={"records": records})


# --- checking --------------------------------------------------------------------------------


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as e:
                raise TrainingDataError(f"{path}:{line}: not valid JSON ({e})") from None
            if not isinstance(value, dict):
                raise TrainingDataError(f"{path}:{line}: a row must be a JSON object, got {type(value).__name__}")
            yield line, value


def _unique(seen: dict[str, str], key: str, where: str) -> None:
    if key in seen:
        raise TrainingDataError(f"{where}: duplicate {key} (first at {seen[key]})")
    seen[key] = where


def _text(row: Mapping[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise TrainingDataError(f"{where}: `{key}` must be a non-empty string, got {value!r}")
    return value


def _split(row: Mapping[str, Any], where: str) -> None:
    if row.get("split") not in SPLITS:
        raise TrainingDataError(f"{where}: `split` must be one of {', '.join(SPLITS)}, got {row.get('split')!r}")


def _tools(row: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    tools = row.get("tools")
    if not isinstance(tools, list):
        raise TrainingDataError(f"{where}: `tools` must be a list of tool schemas, got {type(tools).__name__}")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise TrainingDataError(
                f"{where}: tools[{i}] must be an OpenAI tool schema "
                '{"type": "function", "function": {"name": ..., "parameters": ...}}'
            )
    return tools


def _arguments(value: Any, where: str) -> dict[str, Any]:
    """A call's arguments as an object: a dict as is, OpenAI's JSON string decoded (blank: `{}`)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as e:
            raise TrainingDataError(f"{where}: `function.arguments` is not valid JSON ({e})") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise TrainingDataError(f"{where}: `function.arguments` must be a JSON object, got {type(value).__name__}")
    return value


def _message(m: Any, where: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise TrainingDataError(f"{where}: a message must be an object, got {type(m).__name__}")
    role = m.get("role")
    if role not in ROLES:
        raise TrainingDataError(f"{where}: `role` must be one of {', '.join(ROLES)}, got {role!r}")
    content = m.get("content")
    calls = m.get("tool_calls")
    if calls is not None and (role != "assistant" or not isinstance(calls, list)):
        raise TrainingDataError(f"{where}: `tool_calls` must be a list, and only on an assistant message")
    if not isinstance(content, str) and not (role == "assistant" and calls and content is None):
        raise TrainingDataError(f"{where}: `content` must be a string (null only beside assistant tool_calls)")
    if role == "tool" and not isinstance(m.get("tool_call_id", m.get("name")), str):
        raise TrainingDataError(f"{where}: a tool message needs `tool_call_id` or `name`")
    if not calls:
        return m
    out = []
    for j, tc in enumerate(calls):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise TrainingDataError(f"{where}: tool_calls[{j}] needs `function.name`")
        args = _arguments(fn.get("arguments"), f"{where} tool_calls[{j}]")
        out.append({**tc, "function": {**fn, "arguments": args}})
    return {**m, "tool_calls": out}


def _messages(row: Mapping[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = row.get(key)
    if not isinstance(value, list) or not value:
        raise TrainingDataError(f"{where}: `{key}` must be a non-empty list of messages")
    return [_message(m, f"{where} {key}[{i}]") for i, m in enumerate(value)]


def _sft_row(row: dict[str, Any], path: Path, line: int) -> SftRow:
    where = f"{path}:{line}"
    _split(row, where)
    messages = _messages(row, "messages", where)
    if not any(m["role"] == "assistant" for m in messages):
        raise TrainingDataError(f"{where}: `messages` has no assistant message, so nothing to learn")
    return SftRow(
        trajectory_id=_text(row, "trajectory_id", where),
        path_id=str(row.get("path_id") or ""),
        messages=messages,
        tools=_tools(row, where),
        source=path,
        line=line,
    )


def _preference_row(row: dict[str, Any], path: Path, line: int) -> PreferenceRow:
    where = f"{path}:{line}"
    _split(row, where)
    prompt = _messages(row, "prompt", where)
    if prompt[-1]["role"] == "assistant":
        raise TrainingDataError(f"{where}: `prompt` must end before the assistant's turn (last role is assistant)")
    sides = {}
    for key in ("chosen", "rejected"):
        sides[key] = _messages(row, key, where)
        if sides[key][0]["role"] != "assistant":
            raise TrainingDataError(f"{where}: `{key}` must start with the assistant's message")
    if sides["chosen"] == sides["rejected"]:
        raise TrainingDataError(f"{where}: `chosen` and `rejected` are the same turn")
    return PreferenceRow(
        pair_id=_text(row, "pair_id", where),
        trajectory_id=_text(row, "trajectory_id", where),
        error_type=str(row.get("error_type") or ""),
        prompt=prompt,
        chosen=sides["chosen"],
        rejected=sides["rejected"],
        tools=_tools(row, where),
        source=path,
        line=line,
    )
