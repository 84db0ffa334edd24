"""Any OpenAI-compatible server: llama.cpp (the embedded default), vLLM, OpenAI itself."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import openai
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from magnet_dagster.config import limits
from magnet_dagster.llm.client import LLMRequest, RawReply

RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)

#: How each server family takes a JSON Schema for structured output.
STRUCTURED_OUTPUT = {
    "llama_cpp": lambda schema: {"type": "json_object", "schema": schema},
    "json_schema": lambda schema: {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": schema, "strict": False},
    },
}

HERMES_TOOL_PROMPT = (
    "You may call functions to help with the user's request. The functions are:\n"
    "<tools>\n{tools}\n</tools>\n"
    'To call functions, reply only with one <tool_call>{{"name": ..., "arguments": {{...}}}}'
    "</tool_call> block per call. If no function fits or a required value is missing, "
    "answer in plain text instead."
)


def flatten_tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls and results as Hermes-style text, for chat templates without tool roles."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "user", "content": f"<tool_response>{m['content']}</tool_response>"})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            body = "".join(
                "<tool_call>"
                + json.dumps(
                    {"name": tc["function"]["name"], "arguments": json.loads(tc["function"]["arguments"] or "{}")}
                )
                + "</tool_call>"
                for tc in m["tool_calls"]
            )
            out.append({"role": "assistant", "content": (m.get("content") or "") + body})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    return out


def tools_in_system_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Render tools into the system prompt, Hermes style, for servers without native tools."""
    listing = "\n".join(json.dumps(t["function"]) for t in tools)
    preamble = HERMES_TOOL_PROMPT.format(tools=listing)
    out = flatten_tool_messages(messages)
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + preamble}
    else:
        out.insert(0, {"role": "system", "content": preamble})
    return out


@dataclass
class OpenAICompatibleBackend:
    """Chat completions against `base_url`; retries 429/5xx/timeouts with jittered backoff."""

    base_url: str
    model: str
    name: str = "openai"
    api_key: str = "not-needed"
    structured_output: str = "json_schema"
    native_tools: bool = True
    #: seconds per attempt; `MAGNET_LLM_TIMEOUT_S` when the backend is built
    timeout_s: float = field(default_factory=lambda: limits().llm_timeout_s)
    max_attempts: int = 5
    max_backoff_s: float = 20.0
    _client: openai.AsyncOpenAI | None = field(default=None, repr=False)

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                max_retries=0,
                timeout=self.timeout_s,
                http_client=openai.DefaultAsyncHttpxClient(timeout=self.timeout_s),
            )
        return self._client

    def request_kwargs(self, request: LLMRequest) -> dict[str, Any]:
        messages = list(request.messages)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }
        if self.native_tools:
            if request.tools:
                kwargs["tools"] = request.tools
        elif request.tools:
            messages = tools_in_system_prompt(messages, request.tools)
        else:
            messages = flatten_tool_messages(messages)
        if request.response_schema is not None:
            kwargs["response_format"] = STRUCTURED_OUTPUT[self.structured_output](request.response_schema)
        kwargs["messages"] = messages
        return kwargs

    async def complete(self, request: LLMRequest) -> RawReply:
        kwargs = self.request_kwargs(request)
        client = self._get_client()
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_random_exponential(multiplier=0.5, max=self.max_backoff_s),
            stop=stop_after_attempt(self.max_attempts),
            reraise=True,
        ):
            with attempt:
                response = await client.chat.completions.create(**kwargs)
        choice = response.choices[0]
        message: dict[str, Any] = {"role": "assistant", "content": choice.message.content}
        if choice.message.tool_calls:
            message["tool_calls"] = [
                {
                    "id": tc.id,
                    "type": "function",
                    "function": {"name": tc.function.name, "arguments": tc.function.arguments},
                }
                for tc in choice.message.tool_calls
            ]
        usage = response.usage
        return RawReply(
            message=message,
            input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            output_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
