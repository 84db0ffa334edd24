"""How requests are shaped for servers with and without native tool calling."""

import json

from magnet_dagster.llm.client import LLMRequest
from magnet_dagster.llm.openai_backend import OpenAICompatibleBackend

TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add.", "parameters": {"type": "object"}}}]
HISTORY = [
    {"role": "system", "content": "Be helpful."},
    {"role": "user", "content": "2+3?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
    {"role": "tool", "tool_call_id": "c0", "name": "add", "content": '{"result": 5}'},
]


def test_native_servers_get_tools_and_json_schema():
    backend = OpenAICompatibleBackend("http://x/v1", "m", name="vllm")
    kw = backend.request_kwargs(LLMRequest(HISTORY, tools=TOOLS, response_schema={"type": "object"}))
    assert kw["tools"] == TOOLS and kw["messages"] == HISTORY
    assert kw["response_format"]["type"] == "json_schema"


def test_llama_cpp_gets_tools_in_the_system_prompt_and_hermes_text():
    backend = OpenAICompatibleBackend("http://x/v1", "m", name="local", structured_output="llama_cpp",
                                      native_tools=False)
    kw = backend.request_kwargs(LLMRequest(HISTORY, tools=TOOLS, response_schema={"type": "object"}))
    assert "tools" not in kw
    assert kw["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    system, user, assistant, tool = kw["messages"]
    assert system["content"].startswith("Be helpful.") and '"name": "add"' in system["content"]
    assert assistant["content"].startswith("<tool_call>")
    assert json.loads(assistant["content"][len("<tool_call>"):-len("</tool_call>")])["arguments"] == {"a": 2, "b": 3}
    assert tool == {"role": "user", "content": '<tool_response>{"result": 5}</tool_response>'}


def test_llama_cpp_flattens_tool_messages_even_without_tools():
    backend = OpenAICompatibleBackend("http://x/v1", "m", name="local", native_tools=False)
    kw = backend.request_kwargs(LLMRequest(HISTORY))
    assert all(m["role"] in ("system", "user", "assistant") and isinstance(m["content"], str) for m in kw["messages"])
