"""What each asset's page shows, read from the materializations of one fake-teacher run.

The pipeline runs once per module (the schema-following fake as teacher and student, a real
DuckDB file and Dagster instance): every asset's metadata opens with a funnel line, shows
rates as percentages, distributions as tables or plots (never a JSON block), previews as
inline tables, plots as base64 PNG in Markdown, and links the exports and the lineage DB.
"""

import base64
import re

import dagster as dg
import pytest

from magnet_dagster import config
from magnet_dagster.definitions import defs
from magnet_dagster.previews import ZWSP
from magnet_dagster.report import summary
from magnet_dagster.store.lineage import LineageStore
from tests.conftest import write_tiny_bfcl_tool_set
from tests.defs.test_assets_fast import CHECKS, PIPELINE, RESOURCES

PNG = b"\x89PNG\r\n\x1a\n"
DATA_IMAGE = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")
#: a rate written as a raw decimal ("0.3295"), which a person has to convert
RAW_DECIMAL = re.compile(r"(?<![\d.])0\.\d{2,}(?![\d.])")
PIPELINE_NAMES = [a.key.to_user_string() for a in PIPELINE]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One materialization of every asset and check for the tiny tool set."""
    root = tmp_path_factory.mktemp("metadata")
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("MAGNET_HOME", str(root / "magnet"))
        mp.setenv("MAGNET_TOOL_SETS_DIR", str(root / "tool_sets"))
        (root / "tool_sets").mkdir()
        write_tiny_bfcl_tool_set(root / "tool_sets", "tiny", ["add", "multiply", "square_root", "round_number"])
        instance.add_dynamic_partitions("tool_sets", ["tiny"])
        result = dg.materialize(PIPELINE + CHECKS, instance=instance, partition_key="tiny", resources=RESOURCES)
        meta = {
            e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
        }
        checks = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
        yield {"meta": meta, "checks": checks, "logs": logs, "store": LineageStore(config.lineage_db_path())}


def _images(value: dg.MetadataValue) -> list[bytes]:
    assert isinstance(value, dg.MarkdownMetadataValue), value
    return [base64.b64decode(m) for m in DATA_IMAGE.findall(value.value)]


@pytest.mark.parametrize("asset", PIPELINE_NAMES)
def test_each_asset_opens_with_a_funnel_line_in_percent(run, asset):
    meta = run["meta"][asset]
    first = next(iter(meta))
    assert first == "funnel", list(meta)[:3]
    line = meta["funnel"].value
    assert isinstance(line, str) and "\n" not in line
    assert re.search(r"\d+ of \d+ .*\(\d+%", line), line


def test_no_entry_is_a_json_block_or_a_raw_decimal(run):
    entries = [(a, k, v) for a, m in run["meta"].items() for k, v in m.items()]
    entries += [(c, k, v) for c, m in run["checks"].items() for k, v in m.items()]
    assert not [(a, k) for a, k, v in entries if isinstance(v, dg.JsonMetadataValue)]
    texts = [(a, k, v.value) for a, k, v in entries if isinstance(v, dg.TextMetadataValue)]
    assert not [(a, k, t) for a, k, t in texts if RAW_DECIMAL.search(t)]
    assert run["meta"]["queries"]["yield"].value.endswith("%")
    assert run["meta"]["trajectories"]["yield"].value.endswith("%")
    assert run["meta"]["student_evaluation"]["turn_accuracy"].value.endswith("%")


def test_graph_row_count_counts_walkable_edges_and_judged_pairs_apart(run):
    meta, store = run["meta"]["function_graph"], run["store"]
    walkable = store.query("SELECT count(*) AS n FROM graph_edges WHERE tool_set = 'tiny' AND relation <> 'none'")
    assert meta["dagster/row_count"].value == meta["edges"].value == walkable[0]["n"]
    assert meta["judged_pairs"].value == store.count("graph_edges", "tiny")
    assert f"{meta['edges'].value} of {meta['judged_pairs'].value} judged pairs became edges" in meta["funnel"].value


@pytest.mark.parametrize(
    ("asset", "key", "plots"),
    [
        ("function_graph", "graph_plot", 1),
        ("function_graph", "degree_histogram", 1),
        ("signature_paths", "mix_plot", 2),
        ("training_splits", "yield_funnel", 1),
        ("training_splits", "distributions", 2),
        ("student_evaluation", "scores_plot", 1),
    ],
)
def test_plots_are_base64_png_in_markdown(run, asset, key, plots):
    images = _images(run["meta"][asset][key])
    assert len(images) == plots
    assert all(i.startswith(PNG) and 1_000 < len(i) < 200_000 for i in images)


def test_distributions_and_previews_are_tables(run):
    tables = {
        "function_catalog": ["categories", "preview", "options"],
        "function_graph": ["verdicts", "preview"],
        "signature_paths": ["shape_mix", "operation_mix", "turns_per_path", "preview"],
        "queries": ["dropped_by_rule", "rejections", "preview"],
        "trajectories": ["error_types", "preview"],
        "training_splits": ["splits", "shape_mix", "preview"],
        "student_evaluation": ["summary", "scores_by_group", "preview"],
    }
    for asset, keys in tables.items():
        for key in keys:
            value = run["meta"][asset][key]
            assert isinstance(value, dg.TableMetadataValue), (asset, key, value)


def _column(run, asset: str, key: str, column: str) -> list:
    """A preview column's text, without the zero-width break opportunities `table` adds."""
    cells = [r.data[column] for r in run["meta"][asset][key].records if r.data[column] is not None]
    return [c.replace(ZWSP, "") if isinstance(c, str) else c for c in cells]


def test_previews_show_what_differs(run):
    descriptions = _column(run, "function_catalog", "preview", "description")
    assert descriptions and not any(d.startswith("This tool belongs") for d in descriptions)
    calls = [c for c in _column(run, "queries", "preview", "reference calls") if c != "—"]
    assert calls and all(re.match(r"^\w+\((\w+=[^,]+(, )?)*\)", c) for c in calls), calls
    assert not any("'name'" in c or "{" in c for c in calls)
    assert all(len(q) <= 160 for q in _column(run, "queries", "preview", "query"))
    shown = {r[0] for r in _column(run, "student_evaluation", "preview", "result")}
    stored = {r["verdict"] for r in run["store"].query("SELECT verdict FROM eval_results WHERE tool_set = 'tiny'")}
    assert shown == {"✓" if v else "✗" for v in stored}, "the preview samples every verdict there is"


def test_training_splits_links_every_export_and_the_lineage_db(run):
    meta = run["meta"]["training_splits"]
    exports = config.exports_dir("tiny")
    expected = {
        "sft_jsonl": exports / "sft.jsonl",
        "sft_parquet": exports / "sft.parquet",
        "preference_jsonl": exports / "preference.jsonl",
        "dataset_card": exports / "dataset_card.md",
        "lineage_db": config.lineage_db_path(),
    }
    for key, path in expected.items():
        assert isinstance(meta[key], dg.PathMetadataValue), key
        assert meta[key].value == str(path) and path.exists(), key
    if (exports / "preference.parquet").exists():
        assert meta["preference_parquet"].value == str(exports / "preference.parquet")
    assert run["meta"]["student_evaluation"]["lineage_db"].value == str(config.lineage_db_path())


def test_plots_are_written_beside_the_exports_and_shown_by_the_card(run):
    exports = config.exports_dir("tiny")
    card = (exports / "dataset_card.md").read_text()
    for name in ("yield_funnel", "turns_per_conversation", "calls_per_turn", "shape_operation_mix",
                 "function_graph", "degree_histogram"):
        assert (exports / f"{name}.png").read_bytes().startswith(PNG), name
        assert f"]({name}.png)" in card, name
    assert (exports / "evaluation_scores.png").read_bytes().startswith(PNG)
    assert run["meta"]["student_evaluation"]["exports"].value == str(exports)


def test_the_report_names_the_paths_the_ui_links(run):
    text = summary("tiny", run["store"])
    meta = run["meta"]["training_splits"]
    for key in ("sft_jsonl", "sft_parquet", "preference_jsonl", "dataset_card", "lineage_db"):
        assert meta[key].value in text, key


def test_llm_statistics_are_logged_as_one_readable_line(run):
    lines = [m for m in run["logs"] if m.startswith("LLM ")]
    assert len(lines) == 4, "graph, queries, trajectories, evaluation: the stages that call an LLM"
    assert all(re.match(r"LLM \S+: \d+ calls \(\d+ from the cache, \d+ new\), \d+ errors, ", m) for m in lines)
    assert not any("{" in m for m in lines)
    assert run["meta"]["queries"]["llm"].value in lines


def test_the_pipeline_reads_as_one_group_and_bfcl_stands_apart():
    graph = defs.resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert {groups[name] for name in PIPELINE_NAMES} == {"magnet_pipeline"}
    assert groups["bfcl_multi_turn"] == "bfcl"
    assert {groups[n] for n in ("base_student", "student_training", "student_comparison")} == {"training"}
    assert defs.resolve_job_def("train_and_evaluate").description
    assert defs.resolve_sensor_def("tool_set_sensor").description
    assert defs.resolve_schedule_def("nightly_evaluation").description
