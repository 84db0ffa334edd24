"""Grounding and schema checks of back-and-forth translation (pure functions)."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from magnet_dagster.synthesis.prompts import calls_schema
from magnet_dagster.synthesis.translation import identifier_names, schema_problem, ungrounded
from magnet_dagster.tools.calls import ToolCall
from magnet_dagster.tools.spec import FunctionSpec

GET = FunctionSpec("get_ticket", "Get a ticket.", {"type": "object", "properties": {"ticket_id": {"type": "integer"}},
                                                    "required": ["ticket_id"]})
CREATE = FunctionSpec("create_ticket", "Create.", {"type": "object", "properties": {
    "title": {"type": "string"}, "priority": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["title"]})


def test_values_literal_in_the_query_are_grounded():
    call = ToolCall("create_ticket", {"title": "Printer offline", "priority": 4})
    assert ungrounded(call, ["Please open a ticket 'printer  offline' with priority 4."], []) == []


def test_values_from_earlier_outputs_are_grounded():
    call = ToolCall("get_ticket", {"ticket_id": 101})
    assert ungrounded(call, ["Show me that ticket."], [{"id": 101, "title": "x"}]) == []


def test_invented_values_are_not_grounded():
    call = ToolCall("create_ticket", {"title": "VPN drops", "priority": 2})
    assert ungrounded(call, ["Open a ticket about the VPN dropping."], [{"id": 7}]) == ["title", "priority"]


def test_number_must_match_as_a_number_not_a_digit_substring():
    assert ungrounded(ToolCall("get_ticket", {"ticket_id": 1}), ["ticket 12"], []) == ["ticket_id"]
    assert ungrounded(ToolCall("get_ticket", {"ticket_id": 12}), ["ticket 12"], []) == []


def test_schema_problem_names_the_broken_constraint():
    assert schema_problem(ToolCall("create_ticket", {"title": "x", "priority": 9}), CREATE) == \
        "create_ticket: 9 is greater than the maximum of 5"
    assert schema_problem(ToolCall("nope", {}), None) == "nope is not offered at this turn"


def test_calls_schema_pins_names_and_count():
    schema = calls_schema([GET, CREATE], exact=2)
    array = schema["properties"]["calls"]
    assert array["minItems"] == array["maxItems"] == 2
    names = [v["properties"]["name"]["enum"] for v in array["items"]["anyOf"]]
    assert names == [["get_ticket"], ["create_ticket"]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["get_ticket", "TicketAPI.create_ticket", "ticketapi", "logIn", "login", "x.y",
                                 "x.y.z.w", "a_bc", "_a_b", "é", "(mean_value)", "GET_TICKET", " ", ".", "-", "2"]),
                max_size=8))
def test_identifier_names_is_the_whole_identifier_match_of_each_name(pieces):
    """The one-scan version agrees with the definition: a name, case-insensitively, not inside a
    longer identifier (no word character or dot before, no word character after)."""
    text = "".join(pieces)
    names = ["get_ticket", "TicketAPI.create_ticket", "TicketAPI", "add", "logIn", "x.y.z", "a_b", "mean_value"]
    by_regex = [n for n in names if ("_" in n or "." in n or n[1:] != n[1:].lower())
                and re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text, re.I)]
    assert identifier_names(text, names) == by_regex
