"""Gemini on Vertex AI, the production teacher: REST `generateContent` on the project's HTTP layer.

Project and location come from `GOOGLE_CLOUD_PROJECT` / `GOOGLE_CLOUD_LOCATION`,
credentials from Application Default Credentials. Requests and replies are translated
to and from the OpenAI message shape the rest of the project speaks, by way of the REST
`generateContent` JSON, so online calls and batch prediction files
(`magnet_dagster.llm.vertex_batch`) are built and parsed by the same functions.

Online calls post that JSON themselves (`JsonHttp` on aiohttp, shared with the OpenAI-compatible
backend) to the URL google-genai would use, with its retry policy (408/429/5xx and broken
connections, jittered exponential backoff) and its error classes (`google.genai.errors`).
google-genai's own client, even on its aiohttp transport, spends 1.3-2 ms of CPU a call
building and validating its pydantic request and response objects, which held it to 0.53-0.68
of the ideal rate at concurrency 64 on loopback, and 0.31-0.34 at 256 (`benchmarks/llm_client.py`).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from tenacity import wait_exponential_jitter

from magnet_dagster.config import limits
from magnet_dagster.llm.client import LLMRequest, RawReply
from magnet_dagster.llm.openai_backend import APIConnectionError, JsonHttp, with_retries
from magnet_dagster.llm.reply_guard import scrub

#: What google-genai calls on Vertex AI, and the statuses its retry policy retries.
API_VERSION = "v1beta1"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MULTI_REGIONAL_LOCATIONS = frozenset({"us", "eu"})
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

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


def model_path(model: str) -> str:
    """The model's resource path on Vertex AI, as google-genai's `t_model` writes it."""
    if model.startswith(("projects/", "models/", "publishers/")):
        return model
    if "/" in model:
        publisher, model_id = model.split("/", 1)
        return f"publishers/{publisher}/models/{model_id}"
    return f"publishers/google/models/{model}"


def vertex_base_url(location: str) -> str:
    """Vertex AI's endpoint for `location`, as google-genai picks it."""
    if location == "global":
        return "https://aiplatform.googleapis.com/"
    if location in MULTI_REGIONAL_LOCATIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com/"
    return f"https://{location}-aiplatform.googleapis.com/"


def api_error(status: int, body: bytes) -> Exception:
    """google-genai's error for an HTTP status >= 400 (`ClientError` for 4xx, `ServerError` for 5xx)."""
    from google.genai import errors

    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = {"error": {"code": status, "message": body.decode("utf-8", "replace")[:2000]}}
    try:
        errors.APIError.raise_error(status, payload, None)
    except errors.APIError as exc:
        return exc
    return errors.APIError(status, payload)  # pragma: no cover - raise_error always raises


def retryable(exc: BaseException) -> bool:
    """What google-genai's retry policy retries: 408/429/5xx, and no whole reply (timeouts, broken connections)."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        return exc.code in RETRY_STATUSES
    return isinstance(exc, APIConnectionError)


@dataclass
class GeminiBackend:
    """Online `generateContent` calls; 408/429/5xx and broken connections are retried with jittered backoff."""

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
    #: sockets open to Vertex AI at most; at least the client's concurrency
    max_connections: int = 1024
    _http: JsonHttp | None = field(default=None, repr=False)
    _url: str | None = field(default=None, repr=False)
    #: one token refresh at a time, per event loop
    _refresh: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, model: str | None = None) -> GeminiBackend:
        return cls(
            model=model or "gemini-2.5-flash",
            project=os.environ.get("GOOGLE_CLOUD_PROJECT"),
            location=os.environ.get("GOOGLE_CLOUD_LOCATION", "us-central1"),
            base_url=os.environ.get("MAGNET_TEACHER_BASE_URL"),
        )

    def _resolve(self) -> str:
        """Credentials and project from Application Default Credentials where not given; the call's URL.

        Blocking (it may ask the metadata server), so it runs in a worker thread, once.
        """
        if self.credentials is None or not self.project:
            import google.auth

            credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            self.credentials = self.credentials or credentials
            self.project = self.project or project
        if not self.project:
            raise ValueError("Gemini on Vertex AI needs a project: set GOOGLE_CLOUD_PROJECT")
        location = self.location or "us-central1"
        base = (self.base_url or vertex_base_url(location)).rstrip("/")
        resource = f"projects/{self.project}/locations/{location}/{model_path(self.model)}"
        return f"{base}/{API_VERSION}/{resource}:generateContent"

    async def _headers(self) -> dict[str, str]:
        """The bearer token (refreshed in a worker thread when expired, once for all waiting calls)."""
        credentials = self.credentials
        if not credentials.valid:
            loop = asyncio.get_running_loop()
            if self._refresh is None or self._refresh[0] is not loop:
                self._refresh = (loop, asyncio.Lock())
            async with self._refresh[1]:
                if not credentials.valid:
                    from google.auth.transport.requests import Request

                    await asyncio.to_thread(credentials.refresh, Request())
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {credentials.token}"}
        quota_project = getattr(credentials, "quota_project_id", None)
        if quota_project:
            headers["x-goog-user-project"] = quota_project
        return headers

    async def complete(self, request: LLMRequest) -> RawReply:
        if self._url is None:
            self._url = await asyncio.to_thread(self._resolve)
        if self._http is None:
            self._http = JsonHttp(self.timeout_s, self.max_connections)
        http, url = self._http, self._url
        body = json.dumps(to_vertex_request(request)).encode()

        async def attempt() -> bytes:
            status, data = await http.post(url, body, await self._headers())
            if status >= 400:
                raise api_error(status, data)
            return data

        data = await with_retries(
            attempt,
            retryable,
            wait_exponential_jitter(
                initial=self.retry_initial_delay_s, max=self.max_backoff_s, jitter=self.retry_initial_delay_s
            ),
            self.max_attempts,
        )
        try:
            reply = json.loads(data)
        except ValueError as exc:
            from google.genai import errors

            raise errors.UnknownApiResponseError(f"reply is not JSON: {exc}") from exc
        return from_gemini_response(reply)

    async def aclose(self) -> None:
        """Close this loop's connections; the next call (on any loop) opens new ones."""
        self._refresh = None
        if self._http is not None:
            await self._http.aclose()
