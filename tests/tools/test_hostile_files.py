"""Hostile and careless tool files: each is refused with a one-line reason; the rest is read.

Deep nesting, huge descriptions, stray Python files and broken lines must never crash a
partition with a RecursionError or lose the good functions beside them.
"""

import json

import pytest

from magnet_dagster.tools.formats import read_tool_set, scan_tool_sets
from magnet_dagster.tools.spec import FunctionSpec, ToolSetError, check_tool_set_name
from magnet_dagster.tools.validation import Rejection, validate_functions

GOOD = {"name": "get_time", "description": "Current time in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def _deep_parameters_text(levels: int) -> str:
    """A parameters schema whose objects nest `levels` times (as text: json.dumps would recurse)."""
    return '{"type": "object", "properties": {"a": ' * levels + "{}" + "}}" * levels


def _deep_function_text(name: str, levels: int) -> str:
    return f'{{"name": "{name}", "description": "Too deep.", "parameters": {_deep_parameters_text(levels)}}}'


def _deep_dict(levels: int) -> dict:
    schema: dict = {}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _spec(name="f", params=None, description="d", returns=None) -> FunctionSpec:
    return FunctionSpec(name, description, params if params is not None else {"type": "object", "properties": {}},
                        returns, source_file="tools.json#0")


def _rules(rejected: list[Rejection]) -> list[str]:
    return [r.rule for r in rejected]


# ------------------------------------------------------------------ 1. names end where they end


def test_tool_set_name_with_a_trailing_newline_is_refused():
    with pytest.raises(ToolSetError, match="is not allowed"):
        check_tool_set_name("trail\n")


def test_function_name_with_a_trailing_newline_is_rejected():
    kept, rejected = validate_functions([_spec("get_time\n"), _spec("ok")])
    assert [k.name for k in kept] == ["ok"]
    assert _rules(rejected) == ["name"] and rejected[0].reason.startswith("tools.json#0: 'get_time\\n': name ")


def test_scan_skips_a_folder_named_with_a_trailing_newline(tmp_path):
    (tmp_path / "trail\n").mkdir()
    (tmp_path / "trail\n" / "tools.json").write_text(json.dumps([GOOD]))
    (tmp_path / "good.json").write_text(json.dumps([GOOD]))
    found, skipped = scan_tool_sets(tmp_path)
    assert list(found) == ["good"] and list(skipped) == ["trail\n"]


# ------------------------------------------------------------------ 2. depth


def test_a_300_deep_function_is_rejected_and_the_good_one_kept(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(f"[{json.dumps(GOOD)}, {_deep_function_text('too_deep', 300)}]")
    source = read_tool_set(path)
    kept, rejected = validate_functions(source.functions)
    assert [k.name for k in kept] == ["get_time"]
    assert [(r.name, r.source_file, r.rule) for r in rejected] == [("too_deep", "deep.json#1", "schema_depth")]
    assert rejected[0].reason == ("deep.json#1: too_deep: parameters nests 601 levels deep; "
                                  "the limit is 32 (MAGNET_MAX_SCHEMA_DEPTH)")


def test_a_300_deep_function_on_a_jsonl_line_is_rejected_and_the_good_one_kept(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + _deep_function_text("too_deep", 300) + "\n")
    kept, rejected = validate_functions(read_tool_set(path).functions)
    assert [k.name for k in kept] == ["get_time"] and _rules(rejected) == ["schema_depth"]


def test_deep_schemas_made_in_python_are_measured_without_recursion():
    deep_returns = _spec("deep_returns", returns=_deep_dict(5000))
    deep_params = _spec("deep_params", params=_deep_dict(5000))
    refs = _spec("deep_ref", params={"type": "object", "properties": {"a": {"$ref": "#/x"}}})
    kept, rejected = validate_functions([deep_returns, deep_params, refs, _spec("ok")])
    assert [k.name for k in kept] == ["ok"]
    assert [(r.name, r.rule) for r in rejected] == [
        ("deep_returns", "schema_depth"), ("deep_params", "schema_depth"), ("deep_ref", "parameters_ref")]
    assert "returns nests 10001 levels deep" in rejected[0].reason


def test_schema_depth_limit_comes_from_the_environment_at_validation_time(monkeypatch):
    three = _spec(params={"type": "object", "properties": {"a": {"type": "object", "properties": {}}}})
    assert validate_functions([three])[1] == []
    monkeypatch.setenv("MAGNET_MAX_SCHEMA_DEPTH", "3")
    assert _rules(validate_functions([three])[1]) == ["schema_depth"]


def test_a_toolbench_template_too_deep_is_rejected_not_recursed(tmp_path):
    template = '{"a": ' * 400 + "1" + "}" * 400
    path = tmp_path / "deep_tb.json"
    path.write_text('{"tool_name": "Deep", "api_list": [{"name": "get", "url": "u", "template_response": '
                    f'{template}}}, {{"name": "ok", "url": "u"}}]}}')
    kept, rejected = validate_functions(read_tool_set(path).functions)
    assert [k.name for k in kept] == ["ok_for_deep"]
    assert [(r.name, r.rule) for r in rejected] == [("get_for_deep", "schema_depth")]


def test_a_json_file_nested_100000_deep_is_one_clear_line(tmp_path):
    path = tmp_path / "abyss.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ToolSetError) as err:
        read_tool_set(path)
    assert str(err.value) == f"{path}: JSON nests too deep to read (Python's reader stops near 1,000 levels)"


def test_a_jsonl_line_nested_100000_deep_is_that_line_s_rejection(tmp_path):
    path = tmp_path / "abyss.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + "{\"a\": " * 100_000 + "1" + "}" * 100_000 + "\n")
    source = read_tool_set(path)
    assert [f.name for f in source.functions] == ["get_time"]
    assert [(r.rule, r.reason) for r in source.rejections] == [
        ("json_line", "abyss.jsonl:2: JSON nests too deep to read (Python's reader stops near 1,000 levels)")]


# ------------------------------------------------------------------ 3. description length


def test_a_2_mb_description_is_rejected_with_its_length_and_the_limit(tmp_path):
    huge = dict(GOOD, name="chatty", description="x" * 2_000_000)
    wordy_param = dict(GOOD, name="wordy", parameters={"type": "object", "properties": {
        "city": {"type": "string", "description": "y" * 9_000}}})
    path = tmp_path / "big.json"
    path.write_text(json.dumps([GOOD, huge, wordy_param]))
    kept, rejected = validate_functions(read_tool_set(path).functions)
    assert [k.name for k in kept] == ["get_time"]
    assert [(r.name, r.rule, r.reason) for r in rejected] == [
        ("chatty", "description_length",
         "big.json#1: chatty: description is 2000000 characters; the limit is 8000 (MAGNET_MAX_DESCRIPTION_CHARS)"),
        ("wordy", "description_length",
         "big.json#2: wordy: parameters description at properties/city is 9000 characters; "
         "the limit is 8000 (MAGNET_MAX_DESCRIPTION_CHARS)"),
    ]


def test_description_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MAGNET_MAX_DESCRIPTION_CHARS", "5")
    assert _rules(validate_functions([_spec(description="too long")])[1]) == ["description_length"]


# ------------------------------------------------------------------ 4. default within enum


def test_a_default_outside_its_enum_is_rejected():
    params = {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"], "default": "k"}}}
    kept, rejected = validate_functions([_spec(params=params), _spec("ok")])
    assert [k.name for k in kept] == ["ok"]
    assert [(r.rule, r.reason) for r in rejected] == [
        ("default_enum", "tools.json#0: f: parameter 'unit': default 'k' is not one of its enum values")]
    inside = {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"], "default": "f"}}}
    assert validate_functions([_spec(params=inside)])[1] == []


# ------------------------------------------------------------------ 5. ToolBench booleans


def test_toolbench_boolean_defaults_1_0_and_true_false_in_any_case_are_booleans(tmp_path):
    params = [{"name": n, "type": "BOOLEAN", "description": n, "default": d}
              for n, d in (("one", "1"), ("zero", "0"), ("upper", "TRUE"), ("lower", "false"), ("number", 1))]
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"tool_name": "Flags", "category_name": "Tools", "api_list": [
        {"name": "Set Flags", "url": "https://flags.example.invalid", "description": "Set flags.",
         "required_parameters": [], "optional_parameters": params}]}))
    kept, rejected = validate_functions(read_tool_set(path).functions)
    assert rejected == []
    props = kept[0].properties
    defaults = [props[n]["default"] for n in ("one", "zero", "upper", "lower", "number")]
    assert defaults == [True, False, True, False, True]


# ------------------------------------------------------------------ 6. JSONL line by line


def test_each_bad_jsonl_line_is_its_own_rejection(tmp_path):
    lines = [json.dumps(GOOD), "{oops", "[" * 30_000 + "]" * 30_000, json.dumps({"hello": "world"}), "5",
             "", json.dumps(dict(GOOD, name="get_date")), "1" * 5000]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    source = read_tool_set(path)
    assert [f.name for f in source.functions] == ["get_time", "get_date"]
    assert [(r.source_file, r.rule) for r in source.rejections] == [
        ("mixed.jsonl:2", "json_line"), ("mixed.jsonl:3", "json_line"), ("mixed.jsonl:4", "not_a_function"),
        ("mixed.jsonl:5", "not_a_function"), ("mixed.jsonl:8", "json_line")]
    reasons = [r.reason for r in source.rejections]
    assert reasons[:4] == [
        "mixed.jsonl:2: invalid JSON at column 2: Expecting property name enclosed in double quotes",
        "mixed.jsonl:3: JSON nests too deep to read (Python's reader stops near 1,000 levels)",
        "mixed.jsonl:4: item 0 is not a recognised function object",
        "mixed.jsonl:5: item 0 is not an object",
    ]
    assert reasons[4].startswith("mixed.jsonl:8: unreadable JSON: Exceeds the limit")
    assert all("\n" not in r for r in reasons)


def test_a_bfcl_style_json_file_of_lines_is_read_line_by_line(tmp_path):
    path = tmp_path / "BFCL_v3_simple.json"
    path.write_text(json.dumps(GOOD) + "\n{broken\n" + json.dumps(dict(GOOD, name="get_date")) + "\n")
    source = read_tool_set(path)
    assert [f.name for f in source.functions] == ["get_time", "get_date"]
    assert [(r.source_file, r.rule) for r in source.rejections] == [("BFCL_v3_simple.json:2", "json_line")]


def test_rejection_is_importable_from_spec_and_validation():
    from magnet_dagster.tools import spec, validation

    assert validation.Rejection is spec.Rejection


# ------------------------------------------------------------------ 7. stray Python files


def test_a_stray_python_file_in_a_folder_is_never_imported(tmp_path):
    folder = tmp_path / "weather"
    folder.mkdir()
    marker = tmp_path / "imported.marker"
    (folder / "weather.json").write_text(json.dumps([GOOD]))
    (folder / "setup.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit('boom')\n")
    (folder / "notes.txt").write_text("hello")
    source = read_tool_set(folder)
    assert [f.name for f in source.functions] == ["get_time"]
    assert not marker.exists()
    assert source.ignored == ["notes.txt: not read (tool files are .json, .jsonl, .py or toolset.yaml)",
                              "setup.py: not imported (not a `python:` target in toolset.yaml)"]
    assert source.executor == {"kind": "simulated"}


def test_a_folder_of_only_unlisted_python_says_why(tmp_path):
    folder = tmp_path / "pyonly"
    folder.mkdir()
    marker = tmp_path / "imported.marker"
    (folder / "setup.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(ToolSetError) as err:
        read_tool_set(folder)
    assert "setup.py: not imported (not a `python:` target in toolset.yaml)" in str(err.value)
    assert not marker.exists()


# ------------------------------------------------------------------ 8. files without functions


@pytest.mark.parametrize("content", ["[]", '{"tools": []}', '{"tool_name": "T", "api_list": []}',
                                     '{"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}'])
def test_a_file_with_no_functions_is_a_rejection_naming_it(tmp_path, content):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "good.json").write_text(json.dumps([GOOD]))
    (folder / "hollow.json").write_text(content)
    source = read_tool_set(folder)
    assert [f.name for f in source.functions] == ["get_time"]
    assert [(r.source_file, r.rule, r.reason) for r in source.rejections] == [
        ("hollow.json", "no_functions", "hollow.json: holds no functions")]


def test_a_jsonl_file_of_empty_lists_is_a_rejection(tmp_path):
    path = tmp_path / "hollow.jsonl"
    path.write_text("[]\n\n[]\n")
    assert [(r.rule, r.reason) for r in read_tool_set(path).rejections] == [
        ("no_functions", "hollow.jsonl: holds no functions")]


# ------------------------------------------------------------------ 9. one-line errors


def test_a_broken_toolset_yaml_is_one_line_naming_the_file(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "toolset.yaml").write_text("python:\n  - target: a.py\n    states: [1, 2\noptions: {x: 1\n")
    with pytest.raises(ToolSetError) as err:
        read_tool_set(folder)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{folder / 'toolset.yaml'}: invalid YAML: ")


def test_a_multiline_import_error_is_one_line(tmp_path):
    path = tmp_path / "noisy.py"
    path.write_text("raise ValueError('first line\\n\\n   second line')\n")
    with pytest.raises(ToolSetError) as err:
        read_tool_set(path)
    assert str(err.value) == f"python target {path}: importing it failed: ValueError: first line second line"


@pytest.mark.parametrize("name, content, message", [
    ("latin.json", b'[{"name": "caf\xe9"}]', "not UTF-8 text (byte 0xe9 at offset 14)"),
    ("opts", None, "`options` must be a mapping"),
    ("mcp.json", b'{"tools": [5]}', "mcp.json: tools[0] is not an object"),
])
def test_other_unreadable_inputs_are_one_line_tool_set_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
        (path / "toolset.yaml").write_text("options: [1, 2]\nbfcl_classes: MathAPI\n")
    else:
        path.write_bytes(content)
    with pytest.raises(ToolSetError) as err:
        read_tool_set(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_odd_field_types_are_rejected_by_rule_not_crashed_on(tmp_path):
    deep = "[" * 400 + "]" * 400
    path = tmp_path / "odd.json"
    path.write_text(f'[{{"name": ["a", "list"], "description": "x", "parameters": {{"type": "object"}}}}, '
                    f'{{"name": "deep_text", "description": {deep}, "category": {deep}}}, {json.dumps(GOOD)}]')
    kept, rejected = validate_functions(read_tool_set(path).functions)
    assert [k.name for k in kept] == ["get_time"]
    assert [(r.name, r.rule) for r in rejected] == [(None, "name"), ("deep_text", "description_type")]
    assert rejected[0].reason == "odd.json#0: a list: name a list must match ^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
