"""The lineage DDL ships inside the package: a non-editable install opens a store."""

import subprocess
import sys
import textwrap

from tests.conftest import ROOT


def test_a_non_editable_install_carries_the_sql_and_opens_a_store(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(ROOT)], check=True, cwd=tmp_path, capture_output=True)
    assert sorted(p.name for p in (target / "magnet_dagster" / "sql").glob("*.sql")) == ["lineage.sql", "schema.sql"]
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        from magnet_dagster.store.lineage import LineageStore
        import magnet_dagster
        assert magnet_dagster.__file__.startswith({str(target)!r}), magnet_dagster.__file__
        store = LineageStore({str(tmp_path / "l.duckdb")!r})
        print(store.query("SELECT count(*) AS n FROM training_example_lineage")[0]["n"])
    """)
    out = subprocess.run([sys.executable, "-I", "-c", script], check=True, cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.strip() == "0"
