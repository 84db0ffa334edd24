"""The base student's chat template (tools, tool calls, tool results) and the GGUF conversion's guards.

The conversion itself (half a minute, 517 MB) runs in the vLLM integration test
(`tests/llm/test_vllm_server.py`), which serves what it makes.
"""

import json
import re
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import render_jinja_template

from magnet_dagster.training import base_model
from magnet_dagster.training.base_model import chat_template, chat_template_path, convert_gguf, is_checkpoint

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}},
]
ARGS = {"city": "Paris", "days": [1, 2], "units": {"temp": "C"}}


def conversation(arguments):
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}},
                {"id": "c2", "type": "function", "function": {"name": "ping", "arguments": {}}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "pong"},
        {"role": "assistant", "content": "It is 21 degrees."},
        {"role": "user", "content": "Thanks"},
    ]


@pytest.fixture(scope="module")
def tokenizer():
    """A tokenizer built in memory (no files): only its chat-template rendering is used."""
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")),
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
    )
    tok.chat_template = chat_template()
    return tok


def render(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, tools=TOOLS, tokenize=False, **kwargs)


def test_the_packaged_template_is_the_file_beside_the_module():
    assert chat_template_path().is_file()
    assert chat_template_path().parent == Path(base_model.__file__).parent
    assert "<tool_call>" in chat_template()


def test_tools_tool_calls_and_results_render_in_hermes_chatml(tokenizer):
    text = render(tokenizer, conversation(ARGS), add_generation_prompt=True)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    tools_block = re.search(r"<tools>\n(.*)\n</tools>", system, re.DOTALL).group(1)
    assert [json.loads(line) for line in tools_block.split("\n")] == TOOLS
    assert (
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2], "units": {"temp": "C"}}}'
        '\n</tool_call>\n<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n'
        "<tool_response>\npong\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nIt is 21 degrees.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n"
        "<|im_start|>assistant\n"
    ) in text
    assert text.endswith("<|im_start|>assistant\n")
    assert not render(tokenizer, conversation(ARGS)).endswith("<|im_start|>assistant\n")


def test_arguments_as_a_mapping_or_a_json_string_render_the_same(tokenizer):
    """Hugging Face datasets carry arguments as objects, OpenAI messages as JSON strings: never encoded twice."""
    as_dict = render(tokenizer, conversation(ARGS))
    assert render(tokenizer, conversation(json.dumps(ARGS))) == as_dict
    assert '"arguments": "' not in as_dict


def test_rendered_calls_read_back_as_the_hermes_parser_reads_them(tokenizer):
    """vLLM's `hermes` parser: the JSON between <tool_call> tags, `name` and `arguments` (text, no special tokens)."""
    reply = render(tokenizer, conversation(ARGS)).split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    calls = [json.loads(m) for m in re.findall(r"<tool_call>(.*?)</tool_call>", reply, re.DOTALL)]
    assert calls == [{"name": "get_weather", "arguments": ARGS}, {"name": "ping", "arguments": {}}]


def test_a_system_message_replaces_the_default_and_no_tools_means_plain_chatml(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with_tools = render(tokenizer, messages)
    assert with_tools.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")


def test_only_the_assistant_turns_are_marked_for_training():
    """`{% generation %}` covers each assistant reply through its <|im_end|> (TRL's assistant_only_loss)."""
    text, (indices,) = render_jinja_template(
        [conversation(ARGS)], tools=TOOLS, chat_template=chat_template(), return_assistant_tokens_mask=True
    )[0:2]
    marked = [text[0][start:end] for start, end in indices]
    assert marked[0].startswith("<tool_call>\n") and marked[0].endswith("</tool_call><|im_end|>")
    assert marked[1] == "It is 21 degrees.<|im_end|>"
    assert len(marked) == 2


def test_a_complete_checkpoint_is_kept_as_it_is(tmp_path):
    out = tmp_path / "base"
    out.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        (out / name).write_text("{}")
    assert is_checkpoint(out)
    # the GGUF is not even looked at
    assert convert_gguf(out, gguf=tmp_path / "missing.gguf") == out.resolve()


def test_refuses_to_overwrite_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a complete checkpoint"):
        convert_gguf(tmp_path, gguf=tmp_path / "missing.gguf")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_missing_gguf_is_refused_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf"):
        convert_gguf(tmp_path / "out" / "base", gguf=tmp_path / "missing.gguf")
    assert not (tmp_path / "out").exists()


def test_an_interrupted_conversion_leaves_nothing_half_made(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")

    def half_then_fail(source, dest):
        (dest / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(base_model, "_write_checkpoint", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(tmp_path / "base", gguf=gguf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
