"""A scripted fake LLM backend for unit tests of parsing and control flow (never the integration path)."""

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from magnet_dagster.llm.client import LLMRequest, RawReply


@dataclass
class ScriptedFakeBackend:
    """Answers each request with `script(request)`; records every request it saw.

    A string is the reply's content, a dict is dumped to JSON content, and a `RawReply`
    is returned as is (for tool calls or hostile message shapes).
    """

    script: Callable[[LLMRequest], dict[str, Any] | str | RawReply]
    name: str = "fake"
    model: str = "scripted-fake"
    requests: list[LLMRequest] = field(default_factory=list)

    async def complete(self, request: LLMRequest) -> RawReply:
        self.requests.append(request)
        answer = self.script(request)
        if isinstance(answer, RawReply):
            return answer
        content = answer if isinstance(answer, str) else json.dumps(answer)
        return RawReply({"role": "assistant", "content": content}, 10, 5)

    async def aclose(self) -> None:
        return None
