"""Reading tool sets: format detection from content, clear errors for unreadable files."""

import json

import pytest

from magnet_dagster.tools.formats import gorilla_schema, read_tool_set, scan_tool_sets
from magnet_dagster.tools.spec import ToolSetError, check_tool_set_name

OPENAI = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}]


def test_openai_tools_list(tmp_path):
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(OPENAI))
    source = read_tool_set(path)
    assert source.name == "weather"
    assert [f.name for f in source.functions] == ["get_weather"]
    assert source.functions[0].required == ["city"]
    assert source.executor == {"kind": "simulated"}


def test_bfcl_jsonl_with_gorilla_types(tmp_path):
    doc = {"name": "mean", "description": "Mean.", "parameters": {"type": "dict", "properties": {
        "numbers": {"type": "array", "items": {"type": "float"}}, "opts": {"type": "tuple"}, "x": {"type": "any"}},
        "required": ["numbers"]}, "response": {"type": "dict", "properties": {"result": {"type": "float"}}}}
    path = tmp_path / "stats.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    spec = read_tool_set(path).functions[0]
    assert spec.parameters["type"] == "object"
    assert spec.parameters["properties"]["numbers"]["items"] == {"type": "number"}
    assert spec.parameters["properties"]["opts"]["type"] == "array"
    assert "type" not in spec.parameters["properties"]["x"]
    assert spec.returns == {"type": "object", "properties": {"result": {"type": "number"}}}


def test_mcp_tools_list_result(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"tools": [{"name": "read_file", "description": "Read a file.",
                                           "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
                                           "outputSchema": {"type": "object"}}]}))
    spec = read_tool_set(path).functions[0]
    assert spec.name == "read_file" and spec.returns == {"type": "object"}


def test_bundled_bfcl_classes_from_toolset_yaml(tmp_path):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "toolset.yaml").write_text("bfcl_classes: [MathAPI]\nbfcl_functions: [add, mean]\n")
    source = read_tool_set(folder)
    assert sorted(f.name for f in source.functions) == ["add", "mean"]
    assert source.executor == {"kind": "bfcl", "classes": ["MathAPI"]}
    assert all(f.executable for f in source.functions)


def test_bad_jsonl_line_is_rejected_and_the_rest_is_read(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(OPENAI[0]) + "\n{not json\n")
    source = read_tool_set(path)
    assert [f.name for f in source.functions] == ["get_weather"]
    assert [(r.source_file, r.rule, r.reason) for r in source.rejections] == [
        ("broken.jsonl:2", "json_line",
         "broken.jsonl:2: invalid JSON at column 2: Expecting property name enclosed in double quotes")]


def test_bad_json_file_names_file_and_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(OPENAI, indent=2)[:-3] + "\n")
    with pytest.raises(ToolSetError, match=r"broken.json: invalid JSON at line \d+ column \d+: ") as err:
        read_tool_set(path)
    assert "\n" not in str(err.value)


def test_empty_and_unknown_files_are_refused(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(ToolSetError, match="empty.json: file is empty"):
        read_tool_set(empty)
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"hello": "world"}]))
    with pytest.raises(ToolSetError, match="odd.json: item 0 is not a recognised function object"):
        read_tool_set(odd)


@pytest.mark.parametrize("name", ["../etc", "a/b", "x" * 65, "tab\there", "..", ".hidden", ""])
def test_unsafe_tool_set_names_are_refused(name):
    with pytest.raises(ToolSetError, match="is not allowed"):
        check_tool_set_name(name)


def test_scan_reports_hashes_and_skips_bad_names(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(OPENAI))
    (tmp_path / "bad name.json").write_text(json.dumps(OPENAI))
    found, skipped = scan_tool_sets(tmp_path)
    assert list(found) == ["good"] and list(skipped) == ["bad name.json"]


def test_gorilla_schema_leaves_json_schema_alone():
    schema = {"type": "object", "properties": {"a": {"type": "integer", "enum": [1, 2]}}}
    assert gorilla_schema(schema) == schema
