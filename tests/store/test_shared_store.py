"""The shared Postgres store runs the whole pipeline, and every caller's DuckDB-dialect SQL gives
the same answers on it as on the DuckDB file (a real local PostgreSQL server; `integration`).

The pipeline runs with the schema-following fake (a fake, named as one) as teacher and student,
as in tests/defs/test_assets_fast.py, so this checks the store, not a model.
"""

import json

import dagster as dg
import pytest

from magnet_dagster.defs.evaluation import PREVIOUS_SQL
from magnet_dagster.llm.batch_mode import stored_keys
from magnet_dagster.report import LAST_EVAL_SQL, LLM_SQL, summary
from magnet_dagster.store import counts, loaders
from magnet_dagster.store.lineage import (
    APPEND_TABLES,
    LINEAGE_URL_ENV,
    PARTITION_TABLES,
    LineageStore,
    open_lineage_store,
)
from magnet_dagster.store.shared import PostgresLineageStore, to_postgres
from tests.conftest import write_tiny_bfcl_tool_set
from tests.defs.test_assets_fast import CHECKS, PIPELINE, RESOURCES

pytestmark = pytest.mark.integration


def _run_pipeline(key: str) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tool_sets", [key])
        return dg.materialize(PIPELINE + CHECKS, instance=instance, partition_key=key, resources=RESOURCES)


@pytest.fixture(scope="module")
def both(tmp_path_factory, postgres) -> tuple[LineageStore, PostgresLineageStore]:
    """The pipeline run on the DuckDB file, then on Postgres, for the same tool set and seed."""
    root = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MAGNET_HOME", str(root / "magnet"))
        env.setenv("MAGNET_TOOL_SETS_DIR", str(root / "tool_sets"))
        (root / "tool_sets").mkdir()
        write_tiny_bfcl_tool_set(root / "tool_sets", "tiny", ["add", "multiply", "square_root", "round_number"],
                                 seed=4)
        env.delenv(LINEAGE_URL_ENV, raising=False)
        assert _run_pipeline("tiny").success
        duck = open_lineage_store()
        env.setenv(LINEAGE_URL_ENV, postgres.database())
        result = _run_pipeline("tiny")
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert all(checks.values()), checks
        pg = open_lineage_store()
    assert isinstance(pg, PostgresLineageStore)
    return duck, pg


DROP = {"run_id", "trajectory_run_id", "path_run_id", "created_at", "evaluated_at", "llm_call_id", "llm_call_ids",
        "trajectory_llm_call_ids", "path_llm_call_ids", "call_id", "latency_ms"}


def _stable(rows: list[dict]) -> list[dict]:
    """Rows without what differs from run to run (run ids, call ids, times), also inside nested rows;
    `list(DISTINCT ...)` has no order in DuckDB, so its lists compare sorted."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in DROP}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    out = [clean(r) for r in rows]
    for r in out:
        if r.get("function_names"):
            r["function_names"] = sorted(r["function_names"])
    return out


def test_the_pipeline_on_postgres_stores_what_it_stores_on_the_file(both):
    duck, pg = both
    for table in sorted(PARTITION_TABLES - {"tool_sets"}):
        order = {"functions": "name", "graph_edges": "edge_id", "paths": "path_id", "turns": "turn_id",
                 "trajectories": "trajectory_id", "splits": "trajectory_id", "preference_pairs": "pair_id",
                 "rejected_functions": "name", "path_rejections": "path_id, stage, rule"}[table]
        assert _stable(pg.rows(table, "tiny", order)) == _stable(duck.rows(table, "tiny", order)), table
    # the training tables are written by `student_training`, not the pipeline: see the next test
    for table in sorted(APPEND_TABLES - {"llm_cache", "training_runs", "training_rows"}):
        assert pg.count(table, "tiny") == duck.count(table, "tiny") > 0, table
    assert pg.query("SELECT count(*) AS n FROM llm_cache") == duck.query("SELECT count(*) AS n FROM llm_cache")


def test_every_callers_sql_answers_the_same_on_both_stores(both):
    duck, pg = both
    keys = [r["cache_key"] for r in duck.query("SELECT cache_key FROM llm_cache ORDER BY cache_key LIMIT 5")] + ["x"]
    same = [
        lambda s: counts.stage_counts(s, "tiny"),
        lambda s: counts.operation_survival(s, "tiny"),
        lambda s: counts.rejections_by_rule(s, "tiny"),
        lambda s: loaders.catalog_row(s, "tiny"),
        lambda s: _stable(loaders.load_edges(s, "tiny")),
        lambda s: _stable(loaders.load_test_split(s, "tiny")),
        lambda s: {k: _stable(v) for k, v in loaders.load_turns_by_path(s, "tiny").items()},
        lambda s: sorted(loaders.load_specs(s, "tiny")),
        lambda s: _stable(s.query(LAST_EVAL_SQL, ["tiny"])),
        lambda s: _stable(s.query(LLM_SQL, ["tiny"])),
        # ties on evaluated_at (one transaction's rows) come in either order: compare as sets
        lambda s: sorted(_stable(s.query(PREVIOUS_SQL, ["tiny", "no-such-run"])), key=lambda r: r["mode"]),
        lambda s: _stable(s.query("SELECT * FROM training_example_lineage ORDER BY trajectory_id")),
        lambda s: s.query("SELECT tool_set FROM tool_sets ORDER BY tool_set"),
        lambda s: sorted(stored_keys(s, "fake", "schema-following-fake", keys)),
    ]
    for i, ask in enumerate(same):
        assert ask(pg) == ask(duck), f"query {i}"
    assert summary("tiny", pg).split("  files:")[0] == summary("tiny", duck).split("  files:")[0]
    assert "postgresql://" in summary("tiny", pg)


def test_training_runs_and_rows_store_and_read_back_alike(both):
    """Lists and JSON (`tool_sets`, `settings`, `losses`) as `student_training` appends them."""
    run = {"training_id": "student-r1", "run_id": "r1", "checkpoint": "/c/student", "served_name": "student@ab12",
           "base_model": "/c/base", "tool_sets": ["tiny", "other"], "settings": {"lora": False, "seed": 42},
           "losses": {"sft": [{"step": 1, "loss": 1.25}], "dpo": []}}
    rows = [{"training_id": "student-r1", "run_id": "r1", "tool_set": "tiny", "phase": "dpo", "trajectory_id": "t1",
             "pair_id": "p1"},
            {"training_id": "student-r1", "run_id": "r1", "tool_set": "tiny", "phase": "sft", "trajectory_id": "t1",
             "pair_id": None}]
    read = []
    for store in both:
        store.append("training_runs", [run])
        store.append("training_rows", rows)
        got = store.query("SELECT training_id, tool_sets, settings, losses FROM training_runs WHERE training_id = ?",
                          ["student-r1"])
        got = [{k: json.loads(v) if isinstance(v, str) and k != "training_id" else v for k, v in r.items()}
               for r in got]
        read.append((got, store.query("SELECT phase, trajectory_id, pair_id FROM training_rows "
                                      "WHERE training_id = ? ORDER BY phase", ["student-r1"])))
    assert read[0] == read[1]
    assert read[0][0][0]["tool_sets"] == ["tiny", "other"] and read[0][0][0]["losses"]["sft"][0]["loss"] == 1.25


def test_a_connection_executes_duckdb_dialect_statements(both):
    _, pg = both
    keys = ["drop-me-1", "drop-me-2"]
    pg.append("llm_cache", [{"cache_key": k, "backend": "fake", "model": "schema-following-fake",
                             "response": {"message": {}}, "created_at": None} for k in keys])
    assert pg.query("SELECT count(*) AS n FROM llm_cache WHERE list_contains(?, cache_key)", [keys])[0]["n"] == 2
    with pg.connect() as con:
        con.execute("DELETE FROM llm_cache WHERE backend = ? AND model = ? AND list_contains(?, cache_key)",
                    ["fake", "schema-following-fake", keys])
    assert pg.query("SELECT count(*) AS n FROM llm_cache WHERE list_contains(?, cache_key)", [keys])[0]["n"] == 0


def test_duckdb_dialect_is_transpiled_with_its_semantics():
    assert to_postgres("SELECT a FROM t WHERE b = ? AND c = ?") == "SELECT a FROM t WHERE b = $1 AND c = $2"
    assert to_postgres("SELECT a FROM t WHERE b = $1 OR c = $1") == "SELECT a FROM t WHERE b = $1 OR c = $1"
    grouped = to_postgres("SELECT coalesce(m, 'x') AS m, s, count(*) AS n FROM t GROUP BY ALL ORDER BY m")
    assert "GROUP BY 1, 2" in grouped
    assert "NULLS LAST" in to_postgres("SELECT a FROM t ORDER BY a DESC"), "DuckDB puts NULLs last"
    with pytest.raises(ValueError, match="mixing"):
        to_postgres("SELECT a FROM t WHERE b = ? AND c = $1")

