"""Gemini on Vertex AI, the production teacher, through `google-genai` with `vertexai=True`.

Project and location come from `GOOGLE_CLOUD_PROJECT` / `GOOGLE_CLOUD_LOCATION`,
credentials from Application Default Credentials. Requests and replies are translated
to and from the OpenAI message shape the rest of the project speaks.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from magnet_dagster.llm.client import LLMRequest, RawReply


class GeminiBlocked(RuntimeError):
    """The reply has no usable candidate (safety block, empty candidates)."""


def to_gemini_contents(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI messages -> (system instruction, Gemini `contents`)."""
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
                parts.append({"function_call": {"name": tc["function"]["name"],
                                                "args": json.loads(tc["function"]["arguments"] or "{}")}})
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        elif role == "tool":
            try:
                payload = json.loads(m.get("content") or "null")
            except json.JSONDecodeError:
                payload = m.get("content")
            if not isinstance(payload, dict):
                payload = {"result": payload}
            name = m.get("name") or names.get(m.get("tool_call_id", ""), "tool")
            contents.append({"role": "user", "parts": [{"function_response": {"name": name, "response": payload}}]})
    return system, contents


def from_gemini_response(response: Any) -> RawReply:
    candidates = getattr(response, "candidates", None) or []
    if not candidates:
        feedback = getattr(response, "prompt_feedback", None)
        reason = getattr(feedback, "block_reason", None) if feedback else None
        raise GeminiBlocked(f"no candidates (block reason: {reason})")
    cand = candidates[0]
    content = getattr(cand, "content", None)
    parts = getattr(content, "parts", None) or []
    if not parts:
        raise GeminiBlocked(f"empty candidate (finish reason: {getattr(cand, 'finish_reason', None)})")
    texts, calls = [], []
    for part in parts:
        if getattr(part, "function_call", None):
            fc = part.function_call
            calls.append({"id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                          "function": {"name": fc.name, "arguments": json.dumps(dict(fc.args or {}))}})
        elif getattr(part, "text", None):
            texts.append(part.text)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    usage = getattr(response, "usage_metadata", None)
    return RawReply(
        message=message,
        input_tokens=getattr(usage, "prompt_token_count", 0) or 0,
        output_tokens=getattr(usage, "candidates_token_count", 0) or 0,
    )


@dataclass
class GeminiBackend:
    model: str
    project: str | None = None
    location: str | None = None
    base_url: str | None = None
    credentials: Any = None
    name: str = "gemini"
    _client: Any = field(default=None, repr=False)

    @classmethod
    def from_env(cls, model: str | None = None) -> "GeminiBackend":
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

            http_options = types.HttpOptions(base_url=self.base_url) if self.base_url else None
            self._client = genai.Client(
                vertexai=True, project=self.project, location=self.location,
                credentials=self.credentials, http_options=http_options,
            )
        return self._client

    def request_config(self, request: LLMRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        system, contents = to_gemini_contents(list(request.messages))
        config: dict[str, Any] = {
            "temperature": request.temperature,
            "max_output_tokens": request.max_tokens,
            "seed": request.seed,
        }
        if system:
            config["system_instruction"] = system
        if request.tools:
            config["tools"] = [{"function_declarations": [
                {"name": t["function"]["name"], "description": t["function"].get("description", ""),
                 "parameters_json_schema": t["function"]["parameters"]}
                for t in request.tools
            ]}]
        if request.response_schema is not None:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = request.response_schema
        return contents, config

    async def complete(self, request: LLMRequest) -> RawReply:
        contents, config = self.request_config(request)
        response = await self._get_client().aio.models.generate_content(
            model=self.model, contents=contents, config=config
        )
        return from_gemini_response(response)

    async def aclose(self) -> None:
        self._client = None
