"""Gemini on Vertex AI, the production teacher, through `google-genai` with `vertexai=True`.

Project and location come from `GOOGLE_CLOUD_PROJECT` / `GOOGLE_CLOUD_LOCATION`,
credentials from Application Default Credentials. Requests and replies are translated
to and from the OpenAI message shape the rest of the project speaks, by way of the REST
`generateContent` JSON, so online calls and batch prediction files
(`magnet_dagster.llm.vertex_batch`) are built and parsed by the same functions.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.config import limits
from magnet_dagster.llm.client import LLMRequest, RawReply
from magnet_dagster.llm.reply_guard import scrub

#: Finish reasons whose candidate must not be used even when it carries some parts.
UNUSABLE_FINISH = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MALFORMED_FUNCTION_CALL",
    }
)


class GeminiBlocked(RuntimeError):
    """The reply has no usable candidate (safety block, empty candidates)."""


def to_gemini_contents(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI messages -> (system instruction, REST `contents`).

    Consecutive tool results become one user turn, because Gemini rejects a turn after
    parallel function calls unless it answers all of them.
    """
    system = None
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages:
        role = m["role"]
        if role == "system":
            system = (system + "\n\n" if system else "") + (m.get("content") or "")
        elif role == "user":
            contents.append({"role": "user", "parts": [{"text": m.get("content") or ""}]})
        elif role == "assistant":
            parts: list[dict[str, Any]] = []
            if m.get("content"):
                parts.append({"text": m["content"]})
            for tc in m.get("tool_calls") or []:
                names[tc["id"]] = tc["function"]["name"]
                parts.append(
                    {
                        "functionCall": {
                            "name": tc["function"]["name"],
                            "args": json.loads(tc["function"]["arguments"] or "{}"),
                        }
                    }
                )
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        elif role == "tool":
            try:
                payload = json.loads(m.get("content") or "null")
            except json.JSONDecodeError:
                payload = m.get("content")
            if not isinstance(payload, dict):
                payload = {"result": payload}
            name = m.get("name") or names.get(m.get("tool_call_id", ""), "tool")
            part = {"functionResponse": {"name": name, "response": payload}}
            previous = contents[-1] if contents else None
            if previous and previous["role"] == "user" and "functionResponse" in previous["parts"][-1]:
                previous["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
    return system, contents


def to_vertex_request(request: LLMRequest) -> dict[str, Any]:
    """The REST `generateContent` body (camelCase) for one request, as a batch line needs it."""
    system, contents = to_gemini_contents(list(request.messages))
    generation: dict[str, Any] = {
        "temperature": request.temperature,
        "maxOutputTokens": request.max_tokens,
        "seed": request.seed,
    }
    if request.response_schema is not None:
        generation["responseMimeType"] = "application/json"
        generation["responseJsonSchema"] = request.response_schema
    body: dict[str, Any] = {"contents": contents, "generationConfig": generation}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    if request.tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": t["function"]["name"],
                        "description": t["function"].get("description", ""),
                        "parametersJsonSchema": t["function"].get("parameters") or {"type": "object"},
                    }
                    for t in request.tools
                ]
            }
        ]
    return body


def _as_rest_json(response: Any) -> dict[str, Any]:
    """SDK responses dumped to REST JSON, so SDK objects and batch lines take one parser."""
    if isinstance(response, dict):
        return response
    return response.model_dump(mode="json", by_alias=True, exclude_none=True)


def from_gemini_response(response: Any) -> RawReply:
    """A `GenerateContentResponse` (SDK object or its REST JSON) -> OpenAI-shaped reply.

    Strings are scrubbed to valid Unicode here too, because batch answers go into
    `llm_cache` without passing through `LLMClient`.
    """
    data = _as_rest_json(response)
    candidates = data.get("candidates") or []
    if not candidates:
        feedback = data.get("promptFeedback") or {}
        detail = feedback.get("blockReasonMessage")
        raise GeminiBlocked(
            f"no candidates (block reason: {feedback.get('blockReason')})" + (f": {detail}" if detail else "")
        )
    cand = candidates[0]
    finish = cand.get("finishReason")
    parts = (cand.get("content") or {}).get("parts") or []
    if not parts or finish in UNUSABLE_FINISH:
        raise GeminiBlocked(f"{'empty' if not parts else 'unusable'} candidate (finish reason: {finish})")
    texts, calls = [], []
    for part in parts:
        if part.get("functionCall"):
            fc = part["functionCall"]
            calls.append(
                {
                    "id": fc.get("id") or f"call_{uuid.uuid4().hex[:8]}",
                    "type": "function",
                    "function": {"name": fc["name"], "arguments": json.dumps(fc.get("args") or {})},
                }
            )
        elif part.get("text") and not part.get("thought"):
            texts.append(part["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    usage = data.get("usageMetadata") or {}
    return RawReply(
        message=scrub(message),
        input_tokens=usage.get("promptTokenCount", 0) or 0,
        output_tokens=(usage.get("candidatesTokenCount", 0) or 0) + (usage.get("thoughtsTokenCount", 0) or 0),
    )


@dataclass
class GeminiBackend:
    """Online `generateContent` calls; the SDK retries 408/429/5xx with jittered backoff."""

    model: str
    project: str | None = None
    location: str | None = None
    base_url: str | None = None
    credentials: Any = None
    name: str = "gemini"
    #: seconds per attempt; `MAGNET_LLM_TIMEOUT_S` when the backend is built
    timeout_s: float = field(default_factory=lambda: limits().llm_timeout_s)
    max_attempts: int = 5
    retry_initial_delay_s: float = 1.0
    max_backoff_s: float = 20.0
    _client: Any = field(default=None, repr=False)

    @classmethod
    def from_env(cls, model: str | None = None) -> GeminiBackend:
        return cls(
            model=model or "gemini-2.5-flash",
            project=os.environ.get("GOOGLE_CLOUD_PROJECT"),
            location=os.environ.get("GOOGLE_CLOUD_LOCATION", "us-central1"),
            base_url=os.environ.get("MAGNET_TEACHER_BASE_URL"),
        )

    def _get_client(self) -> Any:
        if self._client is None:
            from google import genai
            from google.genai import types

            http_options = types.HttpOptions(
                base_url=self.base_url,
                timeout=int(self.timeout_s * 1000),
                retry_options=types.HttpRetryOptions(
                    attempts=self.max_attempts,
                    initial_delay=self.retry_initial_delay_s,
                    max_delay=self.max_backoff_s,
                    jitter=self.retry_initial_delay_s,
                ),
            )
            self._client = genai.Client(
                vertexai=True,
                project=self.project,
                location=self.location,
                credentials=self.credentials,
                http_options=http_options,
            )
        return self._client

    def request_config(self, request: LLMRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(contents, config) for `generate_content`: the REST body with its config parts flattened.

        Automatic function calling stays off: tool calls go back to the caller, never run here.
        """
        body = to_vertex_request(request)
        config: dict[str, Any] = {**body["generationConfig"], "automaticFunctionCalling": {"disable": True}}
        for key in ("systemInstruction", "tools"):
            if key in body:
                config[key] = body[key]
        return body["contents"], config

    async def complete(self, request: LLMRequest) -> RawReply:
        contents, config = self.request_config(request)
        response = await self._get_client().aio.models.generate_content(
            model=self.model, contents=contents, config=config
        )
        return from_gemini_response(response)

    async def aclose(self) -> None:
        """Close the HTTP clients, which are bound to this event loop; the next call opens new ones."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aio.aclose()
            client.close()
