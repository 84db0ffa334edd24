"""The exports load with Hugging Face `datasets` and render with a chat template that supports tools.

Conversations and preference pairs are written by the project's own distillation code (with a
scripted fake teacher, named as such), exported with the project's writers, loaded back with
`datasets.load_dataset("json" | "parquet")` (as they are, and with the features the project
publishes), and rendered through transformers' real `apply_chat_template(messages, tools=tools)`
with a Hermes / Qwen2.5-style template that writes call arguments with `tojson`, as Qwen2.5's
does. No network: the tokenizer is a one-word WordLevel model built in memory.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import random
import re
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from magnet_dagster.graph.paths import CALL, MISS_FUNC, MISS_PARAMS  # noqa: E402
from magnet_dagster.llm.client import LLMClient  # noqa: E402
from magnet_dagster.store.lineage import LineageStore  # noqa: E402
from magnet_dagster.synthesis.distillation import (  # noqa: E402
    ERROR_TYPES, Trajectory, contains_hint, positive_trajectory, preference_pair,
)
from magnet_dagster.synthesis.prompts import HINT_MARKER, REPLY_PROMPT  # noqa: E402
from magnet_dagster.synthesis.export import (  # noqa: E402
    LOAD_SNIPPET, CardFacts, dataset_card, export_features, preference_row, sft_row, write_jsonl, write_parquet,
)
from magnet_dagster.synthesis.splits import SplitSettings, assign_splits, deduplicate  # noqa: E402
from magnet_dagster.synthesis.results import TurnResult  # noqa: E402
from magnet_dagster.tools.calls import ToolCall, parse_python_call  # noqa: E402
from magnet_dagster.tools.messages import ADDITIONAL_FUNCTIONS_PROMPT  # noqa: E402
from magnet_dagster.tools.spec import FunctionSpec, stable_id  # noqa: E402
from tests.fakes import ScriptedFakeBackend  # noqa: E402

datasets.disable_progress_bars()

TEMPLATE = (Path(__file__).parent / "chat_template_tools.jinja").read_text()
SEED = 7


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> FunctionSpec:
    return FunctionSpec(name, description, {"type": "object", "properties": properties, "required": required})


_NUMBER = {"type": "number"}
# Shapes as BFCL's MathAPI / TicketAPI give them: numbers and integers, arrays, a nested object,
# defaults of different types, and a function without parameters.
SPECS = {s.name: s for s in [
    _spec("add", "Add two numbers.", {"a": {**_NUMBER, "description": "First number."},
                                      "b": {**_NUMBER, "description": "Second number."}}, ["a", "b"]),
    _spec("multiply", "Multiply two numbers.", {"a": _NUMBER, "b": _NUMBER}, ["a", "b"]),
    _spec("mean", "Calculate the mean of a list of numbers.",
          {"numbers": {"type": "array", "items": _NUMBER, "description": "List of numbers."}}, ["numbers"]),
    _spec("round_number", "Round a number to a given number of decimal places.",
          {"number": {**_NUMBER, "description": "The number to round."},
           "decimal_places": {"type": "integer", "description": "Defaults to 0.", "default": 0}}, ["number"]),
    _spec("create_ticket", "Create a ticket in the system and queue it.",
          {"title": {"type": "string", "description": "Title of the ticket."},
           "description": {"type": "string", "description": "Defaults to an empty string.", "default": ""},
           "priority": {"type": "integer", "description": "From 1 to 5.", "default": 1}}, ["title"]),
    _spec("edit_ticket", "Modify the details of an existing ticket.",
          {"ticket_id": {"type": "integer", "description": "ID of the ticket to be changed."},
           "updates": {"type": "object", "description": "Fields to update.",
                       "properties": {"status": {"type": "string"}, "priority": {"type": "integer"}}}},
          ["ticket_id", "updates"]),
    _spec("close_ticket", "Close a ticket.", {"ticket_id": {"type": "integer"}}, ["ticket_id"]),
    _spec("get_user_tickets", "Get all tickets created by the current user, optionally by status.",
          {"status": {"type": "string", "description": "Status to filter by.", "default": "None"}}, []),
    _spec("logout", "Log out the current user.", {}, []),
]}

MATH = ["add", "multiply", "mean", "round_number"]
TICKETS = ["create_ticket", "edit_ticket", "get_user_tickets", "logout"]

# Three signature paths as the translation stage leaves them: parallel calls, array and nested
# arguments, a miss_params turn (the assistant asks, no call), a miss_func turn (the assistant
# says it cannot, and the function arrives at the next turn in BFCL's user message), a call with no
# arguments.
PATHS = {
    "p_math": [
        TurnResult(0, CALL, ("add", "multiply"), "What is 2 plus 3, and 4 times 6?",
                   [ToolCall("add", {"a": 2, "b": 3}), ToolCall("multiply", {"a": 4, "b": 6})],
                   [{"result": 5}, {"result": 24}], MATH),
        TurnResult(1, CALL, ("mean",), "What is the mean of 5, 24 and 9.5?",
                   [ToolCall("mean", {"numbers": [5, 24, 9.5]})], [{"result": 12.8333}], MATH),
        TurnResult(2, MISS_PARAMS, ("round_number",), "Round a number for me, please.", tools=MATH),
        TurnResult(3, CALL, ("round_number",), "Round 12.8333 to 2 places.",
                   [ToolCall("round_number", {"number": 12.8333, "decimal_places": 2})], [{"result": 12.83}], MATH),
    ],
    "p_tickets": [
        TurnResult(0, CALL, ("create_ticket",), "Open a ticket 'Printer jam': paper stuck in tray 2, priority 4.",
                   [ToolCall("create_ticket", {"title": "Printer jam", "description": "paper stuck in tray 2",
                                               "priority": 4})],
                   [{"id": 101, "title": "Printer jam", "status": "Open", "priority": 4}], TICKETS),
        TurnResult(1, CALL, ("edit_ticket",), "Set ticket 101 to In Progress with priority 5.",
                   [ToolCall("edit_ticket", {"ticket_id": 101, "updates": {"status": "In Progress", "priority": 5}})],
                   [{"status": "Ticket 101 updated successfully"}], TICKETS),
        TurnResult(2, MISS_FUNC, ("close_ticket",), "Now close ticket 101.", tools=TICKETS),
        TurnResult(3, CALL, ("close_ticket",), "Try closing ticket 101 again.",
                   [ToolCall("close_ticket", {"ticket_id": 101})], [{"status": "Ticket 101 closed successfully"}],
                   [*TICKETS, "close_ticket"]),
    ],
    "p_round": [  # its only wrong hint is on the miss_params turn: chosen asks, rejected calls
        TurnResult(0, CALL, ("round_number",), "Round 3.14159 to 2 decimal places.",
                   [ToolCall("round_number", {"number": 3.14159, "decimal_places": 2})], [{"result": 3.14}],
                   ["round_number"]),
        TurnResult(1, MISS_PARAMS, ("round_number",), "Now round another number for me.", tools=["round_number"]),
    ],
    "p_logout": [
        TurnResult(0, CALL, ("get_user_tickets",), "Which of my tickets are still open?",
                   [ToolCall("get_user_tickets", {"status": "Open"})],
                   [[{"id": 7, "title": "VPN down", "status": "Open"}]], TICKETS),
        TurnResult(1, CALL, ("logout",), "Thanks, log me out.", [ToolCall("logout", {})],
                   [{"status": "Logged out"}], TICKETS),
    ],
}


def scripted_fake_teacher(request) -> dict[str, Any]:
    """A fake teacher that does what the (right or wrong) hint says; never a real model."""
    hint = request.messages[-1]["content"]
    if hint == REPLY_PROMPT:
        return {"content": f"Done. The result was {request.messages[-2]['content']}."}
    if "call: " in hint:
        text = hint.split("call: ", 1)[1].split(". Decide the calls", 1)[0]
        return {"calls": [parse_python_call(part).as_dict() for part in text.split("; ")]}
    if "did not give" in hint:
        return {"content": "Which number would you like me to round?"}
    return {"content": "Sorry, I cannot do that with the tools I have."}


def _strip_none(value: Any) -> Any:
    """What a chat template sees: transformers drops message keys whose value is None."""
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Any]:
    """Distil the paths, pair them, split them and write the four export files, as `training_splits` does."""
    root = tmp_path_factory.mktemp("exports")
    backend = ScriptedFakeBackend(scripted_fake_teacher)
    client = LLMClient(backend, LineageStore(root / "lineage.duckdb"), root / "journal").open()

    async def distil() -> tuple[list[dict], list[dict]]:
        trajectories, pairs = [], []
        for i, (path_id, turns) in enumerate(sorted(PATHS.items())):
            traj = await positive_trajectory(client, turns, SPECS, seed=SEED + i)
            assert isinstance(traj, Trajectory), traj
            trajectory_id = stable_id("demo", path_id, "trajectory")
            trajectories.append({"trajectory_id": trajectory_id, "path_id": path_id,
                                 "messages": traj.messages, "tools": traj.tools})
            pair = await preference_pair(client, traj, turns, SPECS, random.Random(f"{SEED}:neg:{path_id}"),
                                         seed=SEED + i)
            if pair:
                pairs.append({"pair_id": stable_id(trajectory_id, pair["turn_index"], pair["error_type"]),
                              "trajectory_id": trajectory_id, **pair})
        return trajectories, pairs

    trajectories, pairs = asyncio.run(distil())
    client.close()
    kept, _ = deduplicate(trajectories)
    assignment = assign_splits([t["path_id"] for t in kept], SplitSettings(seed=SEED))
    split_of = {t["trajectory_id"]: assignment[t["path_id"]] for t in kept}
    tools_of = {t["trajectory_id"]: t["tools"] for t in kept}
    sft = [sft_row(t, split_of[t["trajectory_id"]]) for t in kept]
    pref = [preference_row(p, split_of[p["trajectory_id"]], tools=tools_of[p["trajectory_id"]]) for p in pairs]
    out = root / "demo"
    write_jsonl(out / "sft.jsonl", sft)
    write_parquet(out / "sft.parquet", sft)
    write_jsonl(out / "preference.jsonl", pref)
    write_parquet(out / "preference.parquet", pref)
    # another tool set's export whose every call has the same argument names (`round_number`'s),
    # loaded together with the first: `datasets` must not infer its struct for all calls
    one_shape = [r for r in sft if r["path_id"] == "p_round"]
    write_jsonl(root / "rounding" / "sft.jsonl", one_shape)
    write_parquet(root / "rounding" / "sft.parquet", one_shape)
    return {"dir": out, "cache": root / "hf_cache", "sft": sft, "pref": pref, "one_shape": root / "rounding"}


def _load(exported: dict[str, Any], name: str, builder: str, features: bool = False,
          directories: list[Path] | None = None) -> datasets.Dataset:
    """Load an export as a user would: `load_dataset(builder, data_files=...)`, with the
    project's `export_features(name)` when `features`."""
    ext = "jsonl" if builder == "json" else "parquet"
    files = [str(d / f"{name}.{ext}") for d in directories or [exported["dir"]]]
    return datasets.load_dataset(builder, data_files=files, split="train", cache_dir=str(exported["cache"]),
                                 features=export_features(name) if features else None)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                   unk_token="[UNK]", eos_token="<|im_end|>", chat_template=TEMPLATE)


_TOOLS_BLOCK = re.compile(r"<tools>\n(.*?)\n</tools>", re.S)
_TOOL_CALL = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.S)
_TOOL_RESPONSE = re.compile(r"<tool_response>\n(.*?)\n</tool_response>", re.S)


def _calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`{"name", "arguments"}` of every call, the arguments exactly as the row carries them."""
    return [{"name": tc["function"]["name"], "arguments": tc["function"]["arguments"]}
            for m in messages for tc in m.get("tool_calls") or []]


def _same_json(got: Any, want: Any) -> bool:
    """Equal JSON values of equal types (an int stays an int, no key added or lost); a float may be
    one unit in the last place off, as `datasets`' `Json()` decoding (pandas' ujson) leaves some."""
    if type(got) is not type(want):
        return False
    if isinstance(want, dict):
        return list(got) == list(want) and all(_same_json(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return len(got) == len(want) and all(_same_json(g, w) for g, w in zip(got, want))
    if isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-15)
    return bool(got == want)


def _check_arguments(rows: list[dict[str, Any]], written: list[dict[str, Any]], key: str = "messages") -> None:
    """Each loaded call's arguments are a dict like the one written: the same keys in the same
    order (none of another function's, no nulls added), the same values of the same types."""
    assert len(rows) == len(written)
    for row, want in zip(rows, written):
        got, expected = _calls(row[key]), _calls(want[key])
        assert [c["name"] for c in got] == [c["name"] for c in expected]
        for g, e in zip(got, expected):
            assert isinstance(g["arguments"], dict), g
            assert list(g["arguments"]) == list(e["arguments"]), f"foreign or missing keys: {g}"
            assert _same_json(g["arguments"], e["arguments"]), (g, e)


def _values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _values(v)]
    if isinstance(value, list):
        return [x for v in value for x in _values(v)]
    return [value]


def _check_render(text: str, tools: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
    """Tools in the system prompt exactly as exported, every call as <tool_call> JSON, every result shown."""
    assert HINT_MARKER not in text and "reference hint" not in text
    block = _TOOLS_BLOCK.search(text)
    assert block, text
    assert [json.loads(line) for line in block.group(1).splitlines()] == tools  # no null-padded keys
    for tool in tools:
        assert f'"name": "{tool["function"]["name"]}"' in block.group(1)
    calls = _calls(messages)
    turns = text.split("<|im_end|>\n", 1)[1]  # after the system prompt and its format example
    rendered = [json.loads(body) for body in _TOOL_CALL.findall(turns)]
    assert rendered == calls
    assert all(isinstance(c["arguments"], dict) for c in rendered), "arguments encoded once: an object, not a string"
    assert '"arguments": "' not in turns
    for call in calls:
        assert f'"name": "{call["name"]}", "arguments": {json.dumps(call["arguments"])}}}' in turns
        assert f'"name": "{call["name"]}"' in text
        for value in _values(call["arguments"]):
            assert json.dumps(value) in text
    results = [m["content"] for m in messages if m["role"] == "tool"]
    assert _TOOL_RESPONSE.findall(text) == results
    for m in messages:
        if m["role"] in ("user", "assistant") and m.get("content"):
            assert m["content"] in text


def test_the_fixture_covers_the_shapes_that_matter(exported):
    sft, pref = exported["sft"], exported["pref"]
    assert len(sft) == len(PATHS)
    kinds = {p["error_type"] for p in pref}
    assert kinds <= set(ERROR_TYPES) and len(kinds) >= 2, kinds
    assert any(not p["chosen"][0].get("tool_calls") for p in pref), "a pair whose chosen turn asks instead of calling"
    roles = [m["role"] for row in sft for m in row["messages"]]
    assert {"system", "user", "assistant", "tool"} <= set(roles)
    assistants = [m for row in sft for m in row["messages"] if m["role"] == "assistant"]
    assert any(len(m.get("tool_calls") or []) == 2 for m in assistants), "a turn with parallel calls"
    assert any(not m.get("tool_calls") and "?" in m["content"] for m in assistants), "a turn that asks, no call"
    assert any(m["role"] == "user" and "close_ticket" in m["content"] and m["content"].endswith(
        ADDITIONAL_FUNCTIONS_PROMPT) for row in sft for m in row["messages"]), "a function held out until its turn (BFCL)"
    assert not any(t["function"]["name"] == "close_ticket" for row in sft for t in row["tools"])
    shapes = {json.dumps(sorted(t["function"]["parameters"]["properties"])) for row in sft for t in row["tools"]}
    assert len(shapes) > 3 and "[]" in shapes, "tools whose parameters differ in shape, one with none"
    arguments = [c["arguments"] for row in sft for c in _calls(row["messages"])]
    assert all(isinstance(a, dict) for a in arguments), "arguments exported as objects, not JSON strings"
    values = [v for a in arguments for v in a.values()]
    assert {} in arguments and len({json.dumps(sorted(a)) for a in arguments}) > 5, "calls with different names"
    assert {int, float, str, list, dict} <= {type(v) for v in values}, "numbers, text, arrays, nested objects"
    assert not any(contains_hint(r["messages"]) for r in sft)


@pytest.mark.parametrize("features", [False, True], ids=["inferred", "export_features"])
@pytest.mark.parametrize("builder", ["json", "parquet"])
def test_sft_export_loads_with_nested_fields_intact(exported, builder, features):
    ds = _load(exported, "sft", builder, features)
    assert {"messages", "tools", "split", "trajectory_id", "path_id"} <= set(ds.column_names)
    assert ds.num_rows == len(exported["sft"])
    by_id = {r["trajectory_id"]: r for r in exported["sft"]}
    for row in ds:
        want = by_id[row["trajectory_id"]]
        assert isinstance(row["tools"], list), f"{builder}: tools must load as a list of schemas, not {type(row['tools'])}"
        assert row["tools"] == want["tools"]
        assert _strip_none(row["messages"]) == _strip_none(want["messages"])
        assert row["split"] == want["split"] and row["path_id"] == want["path_id"]
        for m in row["messages"]:
            for tc in m.get("tool_calls") or []:
                assert tc["type"] == "function" and tc["id"]
                assert isinstance(tc["function"]["arguments"], dict)  # Hugging Face form: an object
            if m["role"] == "tool":
                assert m["tool_call_id"] and m["name"]
        assert _calls(row["messages"]) == _calls(want["messages"])
    _check_arguments(sorted(ds, key=lambda r: r["trajectory_id"]),
                     sorted(exported["sft"], key=lambda r: r["trajectory_id"]))


@pytest.mark.parametrize("builder", ["json", "parquet"])
def test_exports_of_two_tool_sets_load_together_with_the_published_features(exported, builder):
    """One file's calls all have `round_number`'s argument names, the other's vary: with
    `export_features` every call keeps its own arguments, whichever file comes first."""
    for first, second in ((exported["one_shape"], exported["dir"]), (exported["dir"], exported["one_shape"])):
        ds = _load(exported, "sft", builder, features=True, directories=[first, second])
        written = [r for d in (first, second) for r in ([json.loads(line) for line in
                                                         (d / "sft.jsonl").read_text().splitlines()])]
        assert ds.features == export_features("sft")
        _check_arguments(list(ds), written)
        assert [r["tools"] for r in ds] == [r["tools"] for r in written]


def test_rows_in_memory_become_a_dataset_with_the_published_features(exported):
    """What a trainer does with rows it read itself: `Dataset.from_list(rows, features=...)`."""
    for name, rows, key in (("sft", exported["sft"], "messages"), ("preference", exported["pref"], "chosen")):
        ds = datasets.Dataset.from_list(rows, features=export_features(name))
        _check_arguments(list(ds), rows, key)
        assert [r["tools"] for r in ds] == [r["tools"] for r in rows]


@pytest.mark.parametrize("builder", ["json", "parquet"])
def test_the_files_hold_exact_json_and_datasets_keeps_keys_and_types(tmp_path, builder):
    """A value pandas' ujson reads one ulp off (0.6): the file's JSON text is exact (what pandas,
    DuckDB and Python's `json` read); through `datasets` the keys and types are exact and the
    float within one ulp (the limit the card names)."""
    call = {"id": "c0", "type": "function", "function": {"name": "scale", "arguments": '{"x": 0.6, "n": 3}'}}
    row = sft_row({"trajectory_id": "t", "path_id": "p", "tools": [SPECS["logout"].openai_tool()],
                   "messages": [{"role": "user", "content": "Scale 3 by 0.6."},
                                {"role": "assistant", "content": None, "tool_calls": [call]}]}, "train")
    assert row["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"x": 0.6, "n": 3}
    write_jsonl(tmp_path / "sft.jsonl", [row])
    write_parquet(tmp_path / "sft.parquet", [row])
    table = pq.read_table(tmp_path / "sft.parquet")
    stored = table["messages"].to_pylist()  # the JSON column as pandas and DuckDB read it: text
    assert stored[0][1]["tool_calls"][0]["function"]["arguments"] == '{"x": 0.6, "n": 3}'
    assert json.loads((tmp_path / "sft.jsonl").read_text())["messages"][1]["tool_calls"][0]["function"][
        "arguments"] == {"x": 0.6, "n": 3}
    path = tmp_path / f"sft.{'jsonl' if builder == 'json' else 'parquet'}"
    ds = datasets.load_dataset(builder, data_files=str(path), split="train", features=export_features("sft"),
                               cache_dir=str(tmp_path / "cache"))
    _check_arguments(list(ds), [row])


def test_the_card_shows_how_to_load_and_its_code_runs(exported, monkeypatch):
    card = dataset_card(CardFacts("demo", {}, {}, {}, {}, []))
    assert "```python\n" + LOAD_SNIPPET in card
    assert "JSON **object**" in card and "tojson" in card and "one unit in the last place" in card
    monkeypatch.chdir(exported["dir"])  # the card's code loads the files beside it
    monkeypatch.setattr(datasets, "load_dataset",
                        functools.partial(datasets.load_dataset, cache_dir=str(exported["cache"])))
    scope: dict[str, Any] = {}
    exec(LOAD_SNIPPET, scope)  # the project's own text: the code the card shows
    assert scope["sft"] == export_features("sft") and scope["preference"] == export_features("preference")
    _check_arguments(list(scope["train"]), exported["sft"])
    _check_arguments(list(scope["pairs"]), exported["pref"], "chosen")
    _check_arguments(list(scope["pairs"]), exported["pref"], "rejected")


def test_the_template_writes_arguments_with_tojson_so_strings_would_be_encoded_twice(tokenizer):
    """The test template does what Qwen2.5's does: an object comes out once-encoded, OpenAI's
    JSON string as a quoted string (what the exports must not carry)."""
    def render(arguments: Any) -> str:
        call = {"id": "c0", "type": "function", "function": {"name": "add", "arguments": arguments}}
        return tokenizer.apply_chat_template([{"role": "user", "content": "2+3?"},
                                              {"role": "assistant", "tool_calls": [call]}],
                                             tools=[SPECS["add"].openai_tool()], tokenize=False)
    assert '"arguments": {"a": 2, "b": 3}}' in render({"a": 2, "b": 3})
    assert '"arguments": "{\\"a\\": 2, \\"b\\": 3}"}' in render('{"a": 2, "b": 3}')


@pytest.mark.parametrize("features", [False, True], ids=["inferred", "export_features"])
@pytest.mark.parametrize("builder", ["json", "parquet"])
def test_sft_rows_render_with_a_tool_chat_template(exported, tokenizer, builder, features):
    for row in _load(exported, "sft", builder, features):
        text = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False)
        _check_render(text, row["tools"], row["messages"])
        assert text.count("<|im_start|>system") == 1 + sum(
            1 for m in row["messages"][1:] if m["role"] == "system")


@pytest.mark.parametrize("features", [False, True], ids=["inferred", "export_features"])
@pytest.mark.parametrize("builder", ["json", "parquet"])
def test_preference_export_loads_and_renders_like_a_dpo_trainer(exported, tokenizer, builder, features):
    ds = _load(exported, "preference", builder, features)
    assert {"prompt", "chosen", "rejected", "tools", "error_type", "split", "pair_id", "trajectory_id"} <= set(
        ds.column_names)
    assert ds.num_rows == len(exported["pref"])
    by_id = {r["pair_id"]: r for r in exported["pref"]}
    for row in ds:
        want = by_id[row["pair_id"]]
        assert row["tools"] == want["tools"] and row["tools"]
        for key in ("prompt", "chosen", "rejected"):
            assert _strip_none(row[key]) == _strip_none(want[key])
        assert row["chosen"] != row["rejected"]
        for key in ("prompt", "chosen", "rejected"):
            _check_arguments([row], [want], key)
        # the way TRL renders a conversational preference row: the prompt with a generation
        # prompt, then prompt + completion, which must start with the prompt
        prompt = tokenizer.apply_chat_template(row["prompt"], tools=row["tools"], tokenize=False,
                                               add_generation_prompt=True)
        for key in ("chosen", "rejected"):
            full = tokenizer.apply_chat_template(row["prompt"] + row[key], tools=row["tools"], tokenize=False)
            assert full.startswith(prompt), key
            completion = full[len(prompt):]
            assert HINT_MARKER not in completion
            assert [json.loads(b) for b in _TOOL_CALL.findall(completion)] == _calls(row[key])
        _check_render(tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tools=row["tools"],
                                                    tokenize=False),
                      row["tools"], row["prompt"] + row["chosen"])
