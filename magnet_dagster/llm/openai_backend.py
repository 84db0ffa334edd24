"""Any OpenAI-compatible server: llama.cpp (the embedded default), vLLM, OpenAI itself.

Requests go out as the REST JSON on aiohttp (`JsonHttp`: one session per event loop, keep-alive
connections for the whole concurrency), not through the openai SDK: on aiohttp it costs 1.3-1.9 ms
of CPU a call (0.68-0.72 of the ideal rate at concurrency 64, 0.40-0.44 at 256), on its default
httpx transport 10-18 ms (0.13-0.16 at 64), which at a few hundred calls a second (vLLM on a GPU,
a fast API at concurrency 256) made the client the ceiling (`benchmarks/llm_client.py`).
Failures keep the SDK's names (`RateLimitError`, `InternalServerError`, `APITimeoutError`, ...),
so `llm_calls.error` reads as before; transient ones are retried with jittered backoff.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base

from magnet_dagster.config import limits
from magnet_dagster.llm.client import LLMRequest, RawReply


class APIError(Exception):
    """A failed call to an OpenAI-compatible server; subclasses carry the openai SDK's names."""


class APIConnectionError(APIError):
    """The server could not be reached, or the connection broke before a whole reply."""


class APITimeoutError(APIConnectionError):
    """No whole reply within the timeout."""


class APIStatusError(APIError):
    """An HTTP error status, with the server's body (parsed JSON when it is JSON)."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"Error code: {status_code} - {body}")
        self.status_code = status_code
        self.body = body


class BadRequestError(APIStatusError): ...


class AuthenticationError(APIStatusError): ...


class PermissionDeniedError(APIStatusError): ...


class NotFoundError(APIStatusError): ...


class ConflictError(APIStatusError): ...


class UnprocessableEntityError(APIStatusError): ...


class RateLimitError(APIStatusError): ...


class InternalServerError(APIStatusError): ...


class APIResponseValidationError(APIError):
    """A 200 reply that is not a chat completion (no JSON, no choices)."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(status: int, body: bytes) -> APIStatusError:
    """The error for an HTTP status >= 400, classed as the openai SDK classes it."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body.decode("utf-8", "replace")[:2000]
    kind = _STATUS_ERRORS.get(status, InternalServerError if status >= 500 else APIStatusError)
    return kind(status, parsed)


RETRYABLE = (RateLimitError, InternalServerError, APITimeoutError, APIConnectionError)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (`HTTP(S)_PROXY`, `NO_PROXY`), as the SDKs honour it."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@dataclass
class JsonHttp:
    """POSTs JSON bodies on aiohttp, for the backends' online calls: bytes in, (status, bytes) out.

    One `aiohttp.ClientSession` per event loop (a backend may serve several `asyncio.run`s),
    kept for the loop's life: keep-alive connections, at most `max_connections` open (not below
    the client's concurrency), chunked and gzip/deflate replies, TLS verified as aiohttp verifies
    it (`ssl_context` for a private CA). Proxies come from the environment (`HTTP(S)_PROXY`,
    `NO_PROXY`), looked up once per URL rather than by aiohttp's `trust_env`, which asks a worker
    thread twice a request (proxy and `.netrc`) and so costs more than the rest of the request.
    Redirects are not followed (a 3xx is the reply). Each request has `timeout_s` in all;
    aiohttp's failures become `APITimeoutError` / `APIConnectionError`, which the backends retry.
    """

    timeout_s: float
    max_connections: int = 1024
    #: TLS for https URLs; None: aiohttp's default (the system's trust store, host name checked)
    ssl_context: ssl.SSLContext | None = None
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)
    _proxies: dict[str, str | None] = field(default_factory=dict, repr=False)

    def _get_session(self) -> aiohttp.ClientSession:
        """This loop's session; one made on another loop is let go (its loop took its connections)."""
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or self._loop is not loop or session.closed:
            if session is not None and not session.closed:
                session.detach()
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,  # `limit` alone bounds them: one server takes them all
                ttl_dns_cache=300,
                force_close=False,
                ssl=self.ssl_context if self.ssl_context is not None else True,
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._loop = loop
        return session

    def _proxy(self, url: str) -> str | None:
        if url not in self._proxies:
            self._proxies[url] = env_proxy(url)
        return self._proxies[url]

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body); raises `APITimeoutError` / `APIConnectionError` when there is no whole reply."""
        session = self._get_session()
        try:
            async with session.post(
                url, data=body, headers=headers, proxy=self._proxy(url), allow_redirects=False
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's ServerTimeoutError and ConnectionTimeoutError are ones too
            raise APITimeoutError(f"Request timed out after {self.timeout_s:g} s: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(f"Connection error: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close this loop's session; one from a loop that has ended is let go."""
        session, same_loop = self._session, self._loop is asyncio.get_running_loop()
        self._loop, self._session = None, None
        if session is not None and not session.closed:
            if same_loop:
                await session.close()
            else:
                session.detach()


async def with_retries(
    attempt: Callable[[], Awaitable[Any]],
    retryable: Callable[[BaseException], bool],
    wait: wait_base,
    max_attempts: int,
) -> Any:
    """`attempt()` retried by tenacity while `retryable(error)`, up to `max_attempts` in all.

    The first attempt runs outside tenacity (its machinery costs about 30 us a call, paid by
    every call); its failure is replayed into tenacity, so waits and counts are as if it had
    run inside.
    """
    try:
        return await attempt()
    except Exception as exc:
        if max_attempts <= 1 or not retryable(exc):
            raise
        first = exc
    retrying = AsyncRetrying(
        retry=retry_if_exception(retryable),
        wait=wait,
        stop=stop_after_attempt(max_attempts),
        reraise=True,
    )
    async for call in retrying:
        with call:
            if call.retry_state.attempt_number == 1:
                raise first
            return await attempt()
    raise AssertionError("unreachable: tenacity reraises the last failure")  # pragma: no cover


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
    #: sockets open to the server at most; at least the client's concurrency
    max_connections: int = 1024
    _http: JsonHttp | None = field(default=None, repr=False)

    def _get_http(self) -> JsonHttp:
        if self._http is None:
            self._http = JsonHttp(self.timeout_s, self.max_connections)
        return self._http

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
        body = json.dumps(self.request_kwargs(request)).encode()
        http = self._get_http()
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {self.api_key}",
        }

        async def attempt() -> bytes:
            status, data = await http.post(url, body, headers)
            if status >= 400:
                raise status_error(status, data)
            return data

        data = await with_retries(
            attempt,
            lambda exc: isinstance(exc, RETRYABLE),
            wait_random_exponential(multiplier=0.5, max=self.max_backoff_s),
            self.max_attempts,
        )
        return parse_chat_completion(data)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def parse_chat_completion(data: bytes) -> RawReply:
    """A chat completion's REST JSON -> the first choice as an OpenAI-shaped message, with token counts."""
    try:
        reply = json.loads(data)
        choice = reply["choices"][0]
        got = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise APIResponseValidationError(f"not a chat completion: {type(exc).__name__}: {exc}") from exc
    message: dict[str, Any] = {"role": "assistant", "content": got.get("content")}
    if got.get("tool_calls"):
        message["tool_calls"] = [
            {
                "id": tc.get("id"),
                "type": "function",
                "function": {"name": tc["function"].get("name"), "arguments": tc["function"].get("arguments")},
            }
            for tc in got["tool_calls"]
        ]
    usage = reply.get("usage") or {}
    return RawReply(
        message=message,
        input_tokens=usage.get("prompt_tokens", 0) or 0,
        output_tokens=usage.get("completion_tokens", 0) or 0,
    )
