"""Candidate generation: output fields feeding parameters rank first; lists feed their records' fields."""

from magnet_dagster.graph.candidates import candidate_pairs
from magnet_dagster.tools.spec import FunctionSpec


def _spec(name, params, returns=None, category="shop"):
    return FunctionSpec(name, f"{name}.", {"type": "object", "properties": {p: {"type": "string"} for p in params}},
                        returns=returns, category=category)


def test_a_list_of_records_feeds_the_fields_of_its_records():
    search = _spec("search_products", ["query"], {"type": "array", "items": {
        "type": "object", "properties": {"product_id": {"type": "string"}, "title": {"type": "string"}}}})
    specs = [search, _spec("get_reviews", ["product_id"]), _spec("set_locale", ["locale"]),
             _spec("add_to_cart", ["product_id", "count"])]
    ranked = [c.target for c in candidate_pairs(specs, k=3)["search_products"]]
    assert ranked[:2] == ["add_to_cart", "get_reviews"] and ranked[2] == "set_locale"
    scores = {c.target: c.score for c in candidate_pairs(specs, k=3)["search_products"]}
    assert scores["get_reviews"] > 3 * scores["set_locale"], "a shared field name outweighs a shared type"


def test_same_category_first_then_topped_up_from_the_tool_set():
    source = _spec("find_city", ["name"], {"type": "object", "properties": {"city_id": {"type": "string"}}}, "geo")
    specs = [source, _spec("forecast", ["city_id"], category="weather"), _spec("elevation", ["lat"], category="geo")]
    ranked = [c.target for c in candidate_pairs(specs, k=2)["find_city"]]
    assert ranked == ["elevation", "forecast"]
