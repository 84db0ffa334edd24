"""The edge judge's parameter mappings: the schema that constrains them, the parser that drops
what is not real, and a `judge_graph` run over a scripted fake teacher (a fake, for control flow)
whose rows reach the store and come back through `load_edges` into the graph."""

import asyncio

from magnet_dagster.graph.function_graph import (
    WHOLE_OUTPUT,
    build_graph,
    edge_mappings,
    feeding_sources,
    mapping_sources,
)
from magnet_dagster.graph.judge import edge_request, judge_graph, parse_edges
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.store.loaders import load_edges
from magnet_dagster.tools.spec import FunctionSpec
from tests.fakes import ScriptedFakeBackend


def _spec(name, params, returns=None, required=None):
    """`params`: name -> JSON type (None: untyped)."""
    parameters = {
        "type": "object",
        "properties": {p: ({"type": t} if t else {}) for p, t in params.items()},
        "required": list(params if required is None else required),
    }
    return FunctionSpec(name, f"{name}.", parameters, returns=returns, category="shop")


SEARCH = _spec(
    "search_products",
    {"query": "string"},
    {
        "type": "object",
        "properties": {"product_id": {"type": "string"}, "price": {"type": "number"}, "stock": {"type": "integer"}},
    },
)
REVIEWS = _spec("get_reviews", {"product_id": "string", "limit": "integer"}, required=["product_id"])
CART = _spec("add_to_cart", {"item": "string", "count": "number", "gift": "boolean", "note": None})
LOGIN = _spec("login", {"user": "string"}, {"type": "string"})


def _candidate_schemas(request):
    return request.response_schema["properties"]


def _mapping_properties(source, candidate):
    return _candidate_schemas(edge_request(source, [candidate]))[candidate.name]["properties"]["mapping"]["properties"]


def test_schema_limits_each_mapping_to_the_candidates_parameters_and_the_sources_fields():
    request = edge_request(SEARCH, [REVIEWS, CART])
    items = _candidate_schemas(request)
    assert set(items) == {"get_reviews", "add_to_cart"} and request.response_schema["required"] == list(items)
    for candidate in (REVIEWS, CART):
        item = items[candidate.name]
        assert item["required"] == ["relation", "mapping", "nested"]
        assert item["properties"]["nested"] == {"type": "boolean"}
        assert "reason" not in item["properties"], "no free-text reason: its tokens were half the decode time"
        mapping = item["properties"]["mapping"]
        assert mapping["type"] == "object" and mapping["additionalProperties"] is False
        assert set(mapping["properties"]) <= set(candidate.properties), "keys are only the candidate's parameters"
        assert all(
            p["type"] == "string" and set(p["enum"]) <= {"product_id", "price", "stock"}
            for p in mapping["properties"].values()
        )
    assert len(request.messages) == 1, "still one request for all candidates"
    assert request.max_tokens > edge_request(SEARCH, [REVIEWS]).max_tokens, "budget grows per candidate"


def test_each_parameter_is_offered_only_the_output_fields_whose_type_fits():
    assert {p: v["enum"] for p, v in _mapping_properties(SEARCH, REVIEWS).items()} == {
        "product_id": ["product_id"],
        "limit": ["stock"],  # an integer parameter: never the number field
    }
    assert {p: v["enum"] for p, v in _mapping_properties(SEARCH, CART).items()} == {
        "item": ["product_id"],
        "count": ["price", "stock"],  # an integer field also feeds a number parameter
        "note": ["product_id", "price", "stock"],  # untyped: anything fits
    }, "no field can feed `gift`, so the judge is not offered it"


def test_a_source_without_output_fields_can_only_map_its_whole_output():
    assert mapping_sources(LOGIN.returns) == [WHOLE_OUTPUT] == mapping_sources(None)
    assert mapping_sources({"type": "array", "items": {"type": "object", "properties": {"id": {}}}}) == [WHOLE_OUTPUT]
    assert {p: v["enum"] for p, v in _mapping_properties(LOGIN, CART).items()} == {
        "item": [WHOLE_OUTPUT],  # login returns a string
        "note": [WHOLE_OUTPUT],
    }
    assert feeding_sources(None, {"type": "integer"}) == [WHOLE_OUTPUT], "an unknown output may feed anything"


def test_a_candidate_without_parameters_gets_an_empty_closed_mapping():
    ping = FunctionSpec("ping", "Ping.", {"type": "object", "properties": {}})
    mapping = _candidate_schemas(edge_request(SEARCH, [ping]))["ping"]["properties"]["mapping"]
    assert mapping == {"type": "object", "properties": {}, "additionalProperties": False}


def test_parse_keeps_only_real_parameters_fed_by_real_output_fields():
    reply = {
        "get_reviews": {
            "relation": "full",
            "reason": "id",
            "mapping": {
                "product_id": "product_id",  # kept
                "limit": "price",  # a number cannot feed an integer parameter
                "ghost": "stock",  # not a parameter of the candidate
            },
        },
        "add_to_cart": {
            "relation": "partial",
            "reason": "id",
            "mapping": {"item": " product_id ", "count": 3, "note": "rating", "gift": "stock"},
        },
    }
    verdicts = {v.target: v for v in parse_edges(SEARCH, [REVIEWS, CART], reply)}
    assert verdicts["get_reviews"].mapping == {"product_id": "product_id"}
    assert verdicts["add_to_cart"].mapping == {"item": "product_id"}, "non-string, unknown field, wrong type dropped"


def test_parse_gives_no_mapping_to_relations_that_pass_no_data_or_to_odd_shapes():
    reply = {
        "get_reviews": {"relation": "prerequisite", "mapping": {"product_id": "product_id"}},
        "add_to_cart": {"relation": "full", "mapping": ["item", "product_id"]},
    }
    verdicts = {v.target: v for v in parse_edges(SEARCH, [REVIEWS, CART], reply)}
    assert verdicts["get_reviews"].mapping == {} and verdicts["add_to_cart"].mapping == {}
    assert parse_edges(SEARCH, [REVIEWS], "not json") == []
    assert parse_edges(SEARCH, [REVIEWS], {"get_reviews": {"relation": "maybe"}}) == []
    assert [v.mapping for v in parse_edges(SEARCH, [REVIEWS], {"get_reviews": {"relation": "full"}})] == [{}]


def test_whole_output_is_accepted_only_where_the_source_has_no_fields():
    whole = {"add_to_cart": {"relation": "full", "mapping": {"item": "$"}}}
    assert parse_edges(LOGIN, [CART], whole)[0].mapping == {"item": "$"}
    assert parse_edges(SEARCH, [CART], whole)[0].mapping == {}


def _script(request):
    """Scripted fake teacher (control flow only): keyed by the candidates the schema names."""
    answer = {}
    for name, item in _candidate_schemas(request).items():
        params = list(item["properties"]["mapping"]["properties"])
        if name == "get_reviews":
            answer[name] = {
                "relation": "full",
                "mapping": {"product_id": "product_id", "nonsense": "price"},
                "nested": True,
            }
        elif name == "add_to_cart":
            answer[name] = {"relation": "prerequisite", "mapping": {p: "price" for p in params}, "nested": True}
        else:
            answer[name] = {"relation": "none", "mapping": {}, "nested": False}
    return answer


def test_judge_graph_rows_carry_mappings_into_the_store_and_back_into_the_graph(tmp_path):
    store = LineageStore(tmp_path / "l.duckdb")
    specs = {s.name: s for s in (SEARCH, REVIEWS, CART)}
    backend = ScriptedFakeBackend(_script)
    client = LLMClient(backend, store, tmp_path / "journal", tool_set="shop", run_id="r1").open()
    judged = asyncio.run(judge_graph(client, specs, "shop", "r1", k=5))
    client.close()
    assert len(backend.requests) == len(specs), "one request per source function"
    rows = {(e["source"], e["target"]): e for e in judged.edges}
    assert rows[("search_products", "get_reviews")]["mapping"] == {"product_id": "product_id"}
    assert rows[("search_products", "add_to_cart")]["mapping"] == {}, "prerequisite carries no mapping"
    assert all(isinstance(e["mapping"], dict) for e in judged.edges)
    assert all(e["mapping"] == {} for e in judged.edges if e["relation"] not in ("full", "partial"))

    store.replace_partition(
        "shop",
        {
            "functions": [s.as_row("shop", "r1") for s in specs.values()],
            "graph_edges": [{k: v for k, v in e.items() if k not in ("source", "target")} for e in judged.edges],
        },
    )
    loaded = load_edges(store, "shop")
    assert {(e["source"], e["target"]): e["mapping"] for e in loaded} == {k: e["mapping"] for k, e in rows.items()}
    assert edge_mappings(loaded) == {("search_products", "get_reviews"): {"product_id": "product_id"}}
    graph = build_graph(specs, loaded)
    assert graph.edges["search_products", "get_reviews"]["mapping"] == {"product_id": "product_id"}
    assert graph.edges["search_products", "add_to_cart"]["mapping"] == {}
    assert graph.edges["search_products", "get_reviews"]["nested"] is True
    assert graph.edges["search_products", "add_to_cart"]["nested"] is False, "only a data edge can be nested"
    assert graph.edges["search_products", "get_reviews"]["llm_call_id"] == rows[("search_products", "get_reviews")][
        "llm_call_id"
    ], "Insert's lineage: the call that judged the pair"


def test_edges_stored_before_mappings_load_with_an_empty_mapping(tmp_path):
    store = LineageStore(tmp_path / "l.duckdb")
    store.replace_partition(
        "shop",
        {
            "functions": [s.as_row("shop", "r1") for s in (SEARCH, REVIEWS)],
            "graph_edges": [
                {
                    "edge_id": "e1",
                    "tool_set": "shop",
                    "run_id": "r1",
                    "source_id": SEARCH.function_id("shop"),
                    "target_id": REVIEWS.function_id("shop"),
                    "relation": "full",
                    "reason": "old row",
                    "score": 1.0,
                    "llm_call_id": "c",
                }
            ],
        },
    )
    (edge,) = load_edges(store, "shop")
    assert edge["mapping"] == {} and edge_mappings([edge]) == {}


def test_edge_mappings_keep_only_data_edges_with_entries():
    edges = [
        {"source": "a", "target": "b", "relation": "full", "mapping": {"x": "y"}},
        {"source": "a", "target": "c", "relation": "partial", "mapping": '{"z": "$"}'},
        {"source": "b", "target": "c", "relation": "prerequisite", "mapping": {"x": "y"}},
        {"source": "c", "target": "d", "relation": "full", "mapping": None},
    ]
    assert edge_mappings(edges) == {("a", "b"): {"x": "y"}, ("a", "c"): {"z": "$"}}
