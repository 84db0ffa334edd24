"""How tool calls, their results and refusals look in a chat: the conventions synthesis,
export and evaluation must share, kept beside the call model so none imports another stage.
"""

from __future__ import annotations

import json
import re
from typing import Any

from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.spec import FunctionSpec

#: BFCL's miss_func convention: a withheld function is announced later in a system message.
NEW_TOOLS_PREFIX = "New functions are now available: "

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


def new_tools_message(specs: list[FunctionSpec]) -> dict[str, Any]:
    """The system message that hands the assistant functions it did not have before."""
    return {"role": "system", "content": NEW_TOOLS_PREFIX + json.dumps([s.openai_tool() for s in specs])}


def announced_tools(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tools announced by `new_tools_message`s in `messages`, in order."""
    out = []
    for m in messages:
        content = m.get("content") or ""
        if m["role"] == "system" and content.startswith(NEW_TOOLS_PREFIX):
            out.extend(json.loads(content[len(NEW_TOOLS_PREFIX) :]))
    return out
