"""One call model, one matcher: parsing every call shape and the AST-match rules."""

import json

from magnet_dagster.tools.calls import ToolCall, call_mismatch, calls_mismatch, parse_message_calls
from magnet_dagster.tools.spec import FunctionSpec

ADD = FunctionSpec("add", "Add.", {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"},
                                                                      "round": {"type": "boolean", "default": False}},
                                   "required": ["a", "b"]})
SPECS = {"add": ADD}


def test_native_tool_calls_are_parsed():
    msg = {"role": "assistant", "tool_calls": [{"id": "1", "type": "function",
                                                 "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]}
    assert parse_message_calls(msg) == [ToolCall("add", {"a": 1, "b": 2})]


def test_hermes_tags_are_parsed():
    msg = {"role": "assistant", "content": 'Sure.<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
                                           '<tool_call>{"name": "add", "arguments": {"a": 3, "b": 4}}</tool_call>'}
    assert parse_message_calls(msg) == [ToolCall("add", {"a": 1, "b": 2}), ToolCall("add", {"a": 3, "b": 4})]


def test_json_content_is_parsed_in_its_common_shapes():
    for content in ['{"name": "add", "arguments": {"a": 1, "b": 2}}',
                    '[{"name": "add", "parameters": {"a": 1, "b": 2}}]',
                    '```json\n{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}\n```']:
        assert parse_message_calls({"role": "assistant", "content": content}) == [ToolCall("add", {"a": 1, "b": 2})]


def test_plain_text_has_no_calls():
    assert parse_message_calls({"role": "assistant", "content": "What title should the ticket have?"}) == []


def test_match_allows_int_for_float_and_default_for_missing_optional():
    assert call_mismatch(ToolCall("add", {"a": 1.0, "b": 2.0}), ToolCall("add", {"a": 1, "b": 2, "round": False}), ADD) is None


def test_match_reports_each_broken_rule():
    want = ToolCall("add", {"a": 1, "b": 2})
    assert call_mismatch(want, ToolCall("sub", {"a": 1, "b": 2}), ADD) == "wrong function: expected add, got sub"
    assert call_mismatch(want, ToolCall("add", {"a": 1}), ADD) == "add: missing required argument 'b'"
    assert call_mismatch(want, ToolCall("add", {"a": 1, "b": 2, "c": 3}), ADD) == "add: unknown argument(s) ['c']"
    assert call_mismatch(want, ToolCall("add", {"a": "1", "b": 2}), ADD) == "add: argument 'a' has the wrong type (str)"
    assert call_mismatch(want, ToolCall("add", {"a": 1, "b": 3}), ADD) == "add: argument 'b' expected 2, got 3"


def test_turn_match_is_order_free_but_counts_calls():
    one, two = ToolCall("add", {"a": 1, "b": 2}), ToolCall("add", {"a": 3, "b": 4})
    assert calls_mismatch([one, two], [two, one], SPECS) is None
    assert calls_mismatch([one, two], [one], SPECS) == "expected 2 call(s), got 1"
    assert calls_mismatch([one, two], [one, one], SPECS) is not None


def test_openai_shape_round_trips():
    call = ToolCall("add", {"a": 1, "b": 2})
    shaped = call.openai("call_0")
    assert json.loads(shaped["function"]["arguments"]) == call.arguments
    assert parse_message_calls({"role": "assistant", "tool_calls": [shaped]}) == [call]
