"""Each validation rule rejects one function with a reason naming file, function and rule."""

from magnet_dagster.tools.spec import FunctionSpec
from magnet_dagster.tools.validation import validate_functions


def _spec(name="f", params=None, returns=None, source="tools.json#0") -> FunctionSpec:
    return FunctionSpec(name, "d", params if params is not None else {"type": "object", "properties": {}},
                        returns, source_file=source)


def _reject(spec: FunctionSpec) -> tuple[str, str]:
    kept, rejected = validate_functions([spec, _spec("ok")])
    assert [k.name for k in kept] == ["ok"], "the rest of the tool set goes on"
    assert len(rejected) == 1
    return rejected[0].rule, rejected[0].reason


def test_bad_name():
    assert _reject(_spec("get weather!")) == (
        "name", "tools.json#0: get weather!: name 'get weather!' must match ^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def test_parameters_must_be_an_object_schema():
    assert _reject(_spec(params={"type": "string"}))[0] == "parameters_object"


def test_invalid_json_schema():
    rule, reason = _reject(_spec(params={"type": "object", "properties": {"a": {"type": "strng"}}}))
    assert rule == "parameters_schema" and "properties/a/type" in reason


def test_required_must_be_in_properties():
    assert _reject(_spec(params={"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]})) == (
        "required_subset", "tools.json#0: f: required names ['b'] are not in properties")


def test_enum_and_default_must_match_type():
    assert _reject(_spec(params={"type": "object", "properties": {"a": {"type": "integer", "enum": [1, "two"]}}}))[0] == "enum_type"
    assert _reject(_spec(params={"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}))[0] == "default_type"


def test_refs_are_refused():
    assert _reject(_spec(params={"type": "object", "properties": {"a": {"$ref": "#/defs/x"}}}))[0] == "parameters_ref"


def test_returns_schema_is_checked():
    assert _reject(_spec(returns={"type": 5}))[0] == "returns_schema"


def test_duplicate_name_with_other_schema_is_rejected_same_schema_is_merged():
    a = _spec("dup", source="a.json#0")
    b = _spec("dup", params={"type": "object", "properties": {"x": {"type": "string"}}}, source="b.json#0")
    kept, rejected = validate_functions([a, b, _spec("dup", source="c.json#0")])
    assert [k.source_file for k in kept] == ["a.json#0"]
    assert [(r.rule, r.reason) for r in rejected] == [
        ("duplicate_name", "b.json#0: dup: duplicate name with a different schema (first defined in a.json#0)")]
