"""The scale benchmark on a tiny catalog: every stage runs through Dagster against the scripted
server and makes rows (its figures are read from `make bench`, not asserted)."""

import json

import jsonschema

from benchmarks import scale
from benchmarks.scale_catalog import write_tool_set
from benchmarks.scripted_model import answer
from magnet_dagster.synthesis.prompts import calls_schema
from magnet_dagster.tools.formats import read_tool_set
from magnet_dagster.tools.validation import validate_functions


def test_generated_catalog_reads_and_validates_in_both_formats(tmp_path):
    source = read_tool_set(write_tool_set(tmp_path / "scale_120", 120, options={"seed": 3}))
    kept, rejected = validate_functions(source.functions)
    assert len(kept) == 120 and rejected == []
    assert {s.extra.get("origin", {}).get("format") for s in kept} == {"toolbench", None}  # ToolBench and OpenAI
    assert any("enum" in p for s in kept for p in s.properties.values())
    assert all(s.returns for s in kept) and source.options == {"seed": 3}


def test_scripted_model_answers_the_schema_and_copies_stated_values(tmp_path):
    specs = read_tool_set(write_tool_set(tmp_path / "s", 8)).functions
    schema = calls_schema(specs[:2], exact=2)
    first, second = (s.name for s in specs[:2])
    text = f"{json.dumps([s.name for s in specs[:2]])}\nRequest: Values: " + ", ".join(
        f"{p}={json.dumps('v-' + p)}" for s in specs[:2] for p in s.required
    )
    body = {"messages": [{"role": "user", "content": text}],
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    reply = json.loads(answer(body)["content"])
    jsonschema.validate(reply, schema)
    assert [c["name"] for c in reply["calls"]] == [first, second]
    tool = specs[0].openai_tool()
    call = answer({"messages": [{"role": "user", "content": text}], "tools": [tool]})["tool_calls"][0]["function"]
    jsonschema.validate(json.loads(call["arguments"]), specs[0].parameters)


def test_scale_benchmark_runs_every_stage_and_each_makes_rows(tmp_path, capsys):
    out = tmp_path / "figures.json"
    status = scale.main(["--functions", "16", "--latency-ms", "5", "--concurrency", "8",
                         "--keep", str(tmp_path / "run"), "--json", str(out),
                         "--option", "candidates_per_function=4", "--option", "walk_steps=3"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    [run] = json.loads(out.read_text())
    stages = {s["stage"]: s for s in run["stages"]}
    assert list(stages) == list(scale.STAGES)
    assert all(s["ok"] and s["rows"] > 0 for s in stages.values()), stages
    assert stages["function_graph"]["calls"] == 16, "graph judging is one call per function"
    assert all(stages[s]["new_requests"] > 0 for s in ("queries", "trajectories", "student_evaluation"))
    assert "end to end" in printed and "of the physical limit" in printed
