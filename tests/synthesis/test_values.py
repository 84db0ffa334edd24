"""The values request bounds what a proposal may take (a weak model lists numbers or writes prose
until `max_tokens` cuts the JSON), while a proposal is still judged by the parameter's own schema."""

import asyncio

import jsonschema

from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.synthesis.values import MAX_ITEMS, MAX_STRING, bounded, suggest_values, values_request
from magnet_dagster.tools.spec import FunctionSpec
from tests.fakes import ScriptedFakeBackend

SPEC = FunctionSpec("create_ticket", "Create a ticket.", {"type": "object", "properties": {
    "title": {"type": "string", "description": "Title."},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    "numbers": {"type": "array", "items": {"type": "number"}, "minItems": 10},
    "priority": {"type": "string", "enum": ["low", "high"]},
    "meta": {"type": "object", "properties": {"note": {"type": "string"}, "type": {"type": "string"}}},
}, "required": ["title", "tags", "numbers", "priority", "meta"]})  # fmt: skip


def test_the_request_bounds_arrays_and_free_strings_everywhere_but_keeps_tighter_bounds_and_enums():
    props = values_request(SPEC, ["title", "tags", "numbers", "priority", "meta"], 1, 0.7).response_schema["properties"]
    assert props["title"]["maxLength"] == MAX_STRING and props["title"]["description"] == "Title."
    assert props["tags"]["maxItems"] == 3 and props["tags"]["items"]["maxLength"] == MAX_STRING
    assert props["numbers"]["maxItems"] == MAX_ITEMS and props["numbers"]["minItems"] == MAX_ITEMS
    assert props["priority"] == {"type": "string", "enum": ["low", "high"]}
    assert props["meta"]["properties"]["note"]["maxLength"] == MAX_STRING
    assert props["meta"]["properties"]["type"]["maxLength"] == MAX_STRING, "a property named `type` is a schema too"
    assert SPEC.properties["title"] == {"type": "string", "description": "Title."}, "the spec is not changed"


def test_every_bounded_value_is_valid_against_the_bounded_schema_only_when_short():
    schema = bounded({"type": "array", "items": {"type": "string"}})
    jsonschema.validate(["a"] * MAX_ITEMS, schema)
    assert not jsonschema.Draft202012Validator(schema).is_valid(["a"] * (MAX_ITEMS + 1))
    assert not jsonschema.Draft202012Validator(schema).is_valid(["x" * (MAX_STRING + 1)])


def test_a_proposal_is_still_checked_against_the_real_schema(tmp_path):
    """The `numbers` parameter needs 10 items; the bounded request allows 6, so the scripted fake's
    (a fake, for control flow) 6 numbers fail the real schema and the attempt says so."""
    backend = ScriptedFakeBackend(lambda r: {"title": "Printer jam", "numbers": [1, 2, 3, 4, 5, 6]})
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "journal").open()
    out = asyncio.run(suggest_values(client, SPEC, ["title", "numbers"], 1, 0.7, []))
    client.close()
    assert out == "create_ticket: no usable value proposed for 'numbers'"


def test_numbers_are_proposed_as_a_user_says_them(tmp_path):
    spec = FunctionSpec("divide", "Divide.", {"type": "object", "properties": {
        "a": {"type": "number"}, "b": {"type": "number", "minimum": 0.123456, "maximum": 0.123457},
        "xs": {"type": "array", "items": {"type": "number"}}, "n": {"type": "number"}}})  # fmt: skip
    reply = {"a": 25.7854367229349375, "b": 0.1234565, "xs": [1.23456789, 2.0], "n": 3.0}
    backend = ScriptedFakeBackend(lambda r: reply)  # a fake, for control flow
    client = LLMClient(backend, LineageStore(tmp_path / "l.duckdb"), tmp_path / "journal").open()
    out = asyncio.run(suggest_values(client, spec, ["a", "b", "xs", "n"], 1, 0.7, []))
    client.close()
    assert out == {"a": 25.79, "b": 0.1234565, "xs": [1.235, 2.0], "n": 3.0}, "b keeps its digits: rounded, it breaks its bounds"
