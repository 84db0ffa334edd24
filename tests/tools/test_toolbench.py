"""ToolBench / StableToolBench: tool files, bare api lists and query files become FunctionSpecs."""

import json
import shutil
from pathlib import Path

from magnet_dagster.tools.formats import read_tool_set
from magnet_dagster.tools.toolbench import MAX_NAME, derived_name
from magnet_dagster.tools.validation import validate_functions

EXAMPLE = Path(__file__).parents[2] / "examples" / "tool_sets" / "weather_hub.json"


def _api(tool, api, category="Data", **extra):
    return {"category_name": category, "tool_name": tool, "api_name": api,
            "api_description": f"{api} of {tool}", "required_parameters": [], "optional_parameters": [], **extra}


def test_tool_file_names_types_defaults_and_returns(tmp_path):
    path = tmp_path / "weather_hub.json"
    shutil.copy(EXAMPLE, path)
    source = read_tool_set(path)
    specs = {f.name: f for f in source.functions}
    assert sorted(specs) == ["air_quality_for_weather_hub", "api_5_day_forecast_for_weather_hub",
                             "search_city_for_weather_hub", "weather_alerts_for_weather_hub",
                             "weather_current_for_weather_hub"]
    search = specs["search_city_for_weather_hub"]
    assert search.parameters == {"type": "object", "required": ["q"], "properties": {
        "limit": {"type": "number", "description": "Maximum number of cities", "default": 5.0},
        "q": {"type": "string", "description": "City name to search for", "default": "Lisbon"}}}
    assert search.returns["properties"]["cities"]["items"]["properties"]["lat"] == {"type": "number"}
    assert search.category == "Weather" and search.tool == "Weather Hub"
    assert search.extra["origin"] == {"format": "toolbench", "category_name": "Weather", "tool_name": "Weather Hub",
                                      "api_name": "Search City", "method": "GET",
                                      "url": "https://weather-hub.example.invalid/cities/search"}
    since = specs["weather_alerts_for_weather_hub"].properties["since"]
    assert since == {"type": "string", "description": "Only alerts issued since this day (YYYY-MM-DD)"}
    assert "default" not in specs["weather_current_for_weather_hub"].properties["city_id"]
    assert source.executor == {"kind": "simulated"}
    kept, rejected = validate_functions(source.functions)
    assert len(kept) == 5 and rejected == []
    assert search.as_row("w", "run")["origin"]["api_name"] == "Search City"


def test_types_in_any_case_and_an_unknown_type_rejected_by_name(tmp_path):
    api = _api("Shop", "list items", required_parameters=[
        {"name": "a", "type": "string"}, {"name": "b", "type": "Boolean", "default": "TRUE"},
        {"name": "c", "type": "INTEGER", "default": "7"}])
    bad = _api("Shop", "upload", required_parameters=[{"name": "blob", "type": "BINARY"}])
    path = tmp_path / "shop.json"
    path.write_text(json.dumps({"api_list": [api, bad]}))
    specs = {f.name: f for f in read_tool_set(path).functions}
    props = specs["list_items_for_shop"].properties
    assert [props[k]["type"] for k in "abc"] == ["string", "boolean", "integer"]
    assert props["b"]["default"] is True and props["c"]["default"] == 7
    kept, rejected = validate_functions(list(specs.values()))
    assert [k.name for k in kept] == ["list_items_for_shop"]
    assert [(r.name, r.rule) for r in rejected] == [("upload_for_shop", "parameters_schema")]
    assert rejected[0].reason.startswith("shop.json#api_list[1]: upload_for_shop: parameters is not valid JSON Schema")


def test_default_that_does_not_match_its_type_is_rejected(tmp_path):
    api = _api("Shop", "page", required_parameters=[{"name": "n", "type": "NUMBER", "default": "ten"}])
    path = tmp_path / "shop.json"
    path.write_text(json.dumps([api]))
    _, rejected = validate_functions(read_tool_set(path).functions)
    assert [(r.rule, r.reason) for r in rejected] == [
        ("default_type", "shop.json#0: page_for_shop: parameter 'n': default 'ten' does not match its type")]


def test_query_file_deduplicates_apis_across_queries(tmp_path):
    shared = _api("Movies", "/v2/search/{title}")
    queries = [{"query": "find a film", "query_id": 1, "api_list": [shared, _api("Movies", "Get Cast")]},
               {"query": "who acts", "query_id": 2, "api_list": [shared, _api("Books", "Get Cast")]}]
    path = tmp_path / "G1_query.json"
    path.write_text(json.dumps(queries))
    names = sorted(f.name for f in read_tool_set(path).functions)
    assert names == ["get_cast_for_books", "get_cast_for_movies", "v2_search_title_for_movies"]


def test_colliding_names_get_stable_hash_suffixes_whatever_the_order(tmp_path):
    a, b = _api("Geo DB", "find", category="Travel"), _api("Geo-DB", "find", category="Data")
    names = []
    for order in ([a, b], [b, a]):
        path = tmp_path / "geo.json"
        path.write_text(json.dumps({"api_list": order}))
        names.append({f.extra["origin"]["category_name"]: f.name for f in read_tool_set(path).functions})
    assert names[0] == names[1]
    assert len(set(names[0].values())) == 2
    assert all(n.startswith("find_for_geo_db_") for n in names[0].values())


def test_long_names_are_cut_to_64_characters_and_stay_distinct():
    tool = "The Extremely Verbose International Currency Exchange Rates Provider"
    first, second = derived_name(tool, "Get Historical Rates Between Two Dates"), derived_name(tool, "Get Historical Rates For One Date")
    assert len(first) <= MAX_NAME and len(second) <= MAX_NAME and first != second
    assert first == derived_name(tool, "Get Historical Rates Between Two Dates")
