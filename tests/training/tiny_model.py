"""A tiny random Llama and a byte-level tokenizer with ChatML specials, built in memory.

Training tests need a real `AutoModelForCausalLM` checkpoint that TRL can load, train and save
in a second or two: 2 layers of width 32 over a byte-level BPE vocabulary (every byte, merges
learnt from the sample rows, and `<|im_start|>` / `<|im_end|>`), so every text tokenizes
losslessly and nothing is downloaded.
The chat template is the project's tool-aware template when it exists, else the tests' own
Hermes-style one. `write_export` writes a few hand-made rows in the export format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
PROJECT_TEMPLATE = ROOT / "magnet_dagster" / "training" / "chat_template.jinja"
TEST_TEMPLATE = ROOT / "tests" / "synthesis" / "chat_template_tools.jinja"
SPECIALS = ["<|im_start|>", "<|im_end|>"]


def chat_template() -> str:
    return (PROJECT_TEMPLATE if PROJECT_TEMPLATE.is_file() else TEST_TEMPLATE).read_text(encoding="utf-8")


def _fast(tok: Tokenizer, template: str) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        chat_template=template,
    )


def byte_tokenizer(template: str | None = None) -> PreTrainedTokenizerFast:
    """One token per byte, plus the ChatML specials: lossless, but long sequences."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    return _fast(tok, template if template is not None else chat_template())


def tiny_tokenizer(template: str | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE learnt in memory from the sample rows rendered with the chat template:
    still lossless for any text, but three times shorter on these rows than bytes, which keeps
    a training step well under a second."""
    template = template if template is not None else chat_template()
    render = byte_tokenizer(template or TEST_TEMPLATE.read_text(encoding="utf-8"))
    texts = [render.apply_chat_template(r["messages"], tools=r["tools"], tokenize=False) for r in sft_rows()]
    texts += [
        render.apply_chat_template(r["prompt"] + r[side], tools=r["tools"], tokenize=False)
        for r in preference_rows()
        for side in ("chosen", "rejected")
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=1024,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=SPECIALS,
            show_progress=False,
        ),
    )
    return _fast(tok, template)


def build_tiny_model(directory: Path, template: str | None = None, seed: int = 0) -> Path:
    """Save a tiny random `LlamaForCausalLM` and its tokenizer (with the chat template) to `directory`."""
    import torch

    tokenizer = tiny_tokenizer(template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# --- a few rows in the export format (`magnet_dagster/synthesis/export.py`) ---------------------


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def _call(i: str, name: str, arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": i, "type": "function", "function": {"name": name, "arguments": arguments}}],
    }


def _result(i: str, name: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": i, "name": name, "content": content}


MATH_TOOLS = [
    _tool("add", "Add two numbers.", {"a": {"type": "number"}, "b": {"type": "number"}}, ["a", "b"]),
    _tool(
        "round_number",
        "Round a number.",
        {"number": {"type": "number"}, "decimal_places": {"type": "integer", "default": 0}},
        ["number"],
    ),
]
TICKET_TOOLS = [
    _tool(
        "edit_ticket",
        "Edit a ticket.",
        {
            "ticket_id": {"type": "integer"},
            "updates": {
                "type": "object",
                "properties": {"status": {"type": "string"}, "priority": {"type": "integer"}},
            },
        },
        ["ticket_id", "updates"],
    ),
    _tool("logout", "Log out.", {}, []),
]
SYSTEM = {"role": "system", "content": "Use the tools."}
# arguments as OpenAI's JSON string (today's exports) and as objects (the Hugging Face convention),
# with shapes that differ from function to function: numbers, a nested object, no arguments
MATH = [
    SYSTEM,
    {"role": "user", "content": "Add 0.6 and 2."},
    _call("c0", "add", '{"a": 0.6, "b": 2}'),
    _result("c0", "add", "2.6"),
    {"role": "assistant", "content": "It is 2.6."},
    {"role": "user", "content": "Round it."},
    _call("c1", "round_number", {"number": 2.6, "decimal_places": 0}),
    _result("c1", "round_number", "3"),
    {"role": "assistant", "content": "3."},
]
TICKETS = [
    SYSTEM,
    {"role": "user", "content": "Close ticket 7."},
    _call("c0", "edit_ticket", {"ticket_id": 7, "updates": {"status": "closed"}}),
    _result("c0", "edit_ticket", '{"ok": true}'),
    {"role": "assistant", "content": "Closed."},
    {"role": "user", "content": "Log me out."},
    _call("c1", "logout", {}),
    _result("c1", "logout", '{"ok": true}'),
    {"role": "assistant", "content": "Bye."},
]
#: the argument objects each row was written with, in order
CALLS = {
    "t_math": [("add", {"a": 0.6, "b": 2}), ("round_number", {"number": 2.6, "decimal_places": 0})],
    "t_tickets": [("edit_ticket", {"ticket_id": 7, "updates": {"status": "closed"}}), ("logout", {})],
}


def sft_rows() -> list[dict[str, Any]]:
    return [
        {"messages": MATH, "tools": MATH_TOOLS, "split": "train", "trajectory_id": "t_math", "path_id": "p1"},
        {"messages": TICKETS, "tools": TICKET_TOOLS, "split": "train", "trajectory_id": "t_tickets", "path_id": "p2"},
        {"messages": MATH[:5], "tools": MATH_TOOLS, "split": "test", "trajectory_id": "t_held_out", "path_id": "p3"},
    ]


def preference_rows() -> list[dict[str, Any]]:
    return [
        {
            "prompt": MATH[:6],
            "chosen": [MATH[6]],
            "rejected": [_call("c1", "add", '{"a": 2.6, "b": 0}')],
            "tools": MATH_TOOLS,
            "error_type": "wrong_function",
            "split": "train",
            "pair_id": "pair_math",
            "trajectory_id": "t_math",
        },
        {
            "prompt": TICKETS[:6],
            "chosen": [TICKETS[6]],
            "rejected": [{"role": "assistant", "content": "Which account should I log out?"}],
            "tools": TICKET_TOOLS,
            "error_type": "asks_instead",
            "split": "train",
            "pair_id": "pair_tickets",
            "trajectory_id": "t_tickets",
        },
        {
            "prompt": MATH[:2],
            "chosen": [MATH[2]],
            "rejected": [_call("c0", "add", {"a": 6, "b": 2})],
            "tools": MATH_TOOLS,
            "error_type": "wrong_value",
            "split": "test",
            "pair_id": "pair_held_out",
            "trajectory_id": "t_held_out",
        },
    ]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_export(directory: Path, preference: bool = True) -> Path:
    """An export directory as `training_splits` writes it: `sft.jsonl` and `preference.jsonl`."""
    write_jsonl(directory / "sft.jsonl", sft_rows())
    if preference:
        write_jsonl(directory / "preference.jsonl", preference_rows())
    return directory
