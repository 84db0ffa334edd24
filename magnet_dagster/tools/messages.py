"""How tool calls, their results and refusals look in a chat: the conventions synthesis,
export and evaluation must share, kept beside the call model so none imports another stage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from magnet_dagster.tools.calls import ToolCall, leaves
from magnet_dagster.tools.spec import FunctionSpec

#: BFCL's held-out-function convention (bfcl_eval/constants/default_prompts.py,
#: `DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC`; applied in model_handler/base_handler.py):
#: a `miss_func` function is absent from the tools until the turn it is held out for, which has no
#: user query of its own; the harness adds the function and sends this user message instead.
ADDITIONAL_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"

_ASKS_OR_REFUSES = re.compile(
    r"\?|\b(can ?not|can't|unable|not able|don't have|do not have|no (?:tool|function))\b", re.I
)


def asks_or_refuses(text: str) -> bool:
    """Whether a reply asks the user something or says it cannot help (miss_* turns)."""
    return bool(_ASKS_OR_REFUSES.search(text or ""))


def tool_messages(calls: list[ToolCall], outputs: list[Any], turn: int | str) -> tuple[dict, list[dict]]:
    """One assistant message carrying `calls`, and one `tool` message per result."""
    ids = [f"call_{turn}_{i}" for i in range(len(calls))]
    assistant = {"role": "assistant", "content": None, "tool_calls": [c.openai(i) for c, i in zip(calls, ids)]}
    results = [
        {"role": "tool", "tool_call_id": i, "name": c.name, "content": json.dumps(o)}
        for c, o, i in zip(calls, outputs, ids)
    ]
    return assistant, results


def holdout_message(specs: list[FunctionSpec]) -> dict[str, Any]:
    """BFCL's user message at a held-out function's turn, in its prompting form
    (`DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_PROMPTING`: the functions, a newline, the prompt),
    so that a conversation stored with one `tools` list still shows when each function arrived."""
    functions = json.dumps([s.openai_tool()["function"] for s in specs])
    return {"role": "user", "content": f"{functions}\n{ADDITIONAL_FUNCTIONS_PROMPT}"}


def split_holdout(message: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A holdout message as BFCL's function-calling harness sends it: the bare prompt, plus the
    functions it adds to the tools (OpenAI `tools` entries); any other message with no tools."""
    content = message.get("content") or ""
    if message.get("role") != "user" or not content.endswith("\n" + ADDITIONAL_FUNCTIONS_PROMPT):
        return message, []
    try:
        functions = json.loads(content[: -len(ADDITIONAL_FUNCTIONS_PROMPT) - 1])
    except ValueError:
        return message, []
    if not isinstance(functions, list):
        return message, []
    tools = [{"type": "function", "function": f} for f in functions if isinstance(f, dict)]
    return {"role": "user", "content": ADDITIONAL_FUNCTIONS_PROMPT}, tools


def announced_tools(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tools added by holdout messages in `messages`, in order."""
    return [t for m in messages for t in split_holdout(m)[1]]


_SEPARATOR = re.compile(r"[^0-9A-Za-z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def parameter_words(name: str) -> list[str]:
    """`user_id` -> ["user", "id"], `startDate` -> ["start", "date"]."""
    return [w.lower() for w in _SEPARATOR.split(_CAMEL.sub(" ", name)) if w]


def mentions_parameter(text: str, name: str) -> bool:
    """Whether `text` names the parameter: its name, or its words as a phrase
    ("user id", "user-id", "userid", "user IDs"), case-insensitively."""
    words = parameter_words(name)
    if not words:
        return False
    phrase = r"[\s_\-]*".join(re.escape(w) for w in words)
    return bool(re.search(rf"(?<![0-9a-z]){phrase}(?:e?s)?(?![0-9a-z])", (text or "").lower()))


def asks_for_parameters(text: str, parameters: Sequence[str]) -> bool:
    """An ask on a `miss_params` turn: a question (or a "cannot without") that names every
    missing parameter. An ask for some other parameter does not count."""
    return asks_or_refuses(text) and all(mentions_parameter(text, p) for p in parameters)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def states(value: Any, text: str) -> bool:
    """Whether words state `value`: numbers as numbers, text case- and space-insensitively, a
    list or object when every scalar in it is stated. Shared by the query checks (a value left
    out must not be stated) and the reply check (a result must be)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return float(value) in {float(n) for n in _NUMBER.findall(text)}
    if isinstance(value, str):
        return bool(value.strip()) and " ".join(value.lower().split()) in " ".join(text.lower().split())
    scalars = leaves(value)
    return bool(scalars) and all(states(x, text) for x in scalars)
