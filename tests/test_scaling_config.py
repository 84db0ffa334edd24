"""The instance files for shared deployments load and validate under Dagster's own instance schema.

`dagster_instance_config` is what `DagsterInstance.get()` runs on `$DAGSTER_HOME/dagster.yaml`
before building anything: it checks every section (storage, run launcher, concurrency, run
monitoring) and the rules between them (e.g. `run_queue` limits conflict with `concurrency`)
without importing the classes a section names. So the Kubernetes example validates without
dagster-k8s installed; where dagster-k8s is installed, its run launcher's own config schema is
checked too. The Postgres file is built into a real instance by tests/defs/test_dagster_postgres.py.
"""

import shutil
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

from tests.conftest import ROOT

K8S = ROOT / "examples" / "dagster.k8s.yaml"
POSTGRES = ROOT / "dagster.postgres.yaml"
ENV = {"DAGSTER_PG_HOST": "db", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "dagster",
       "DAGSTER_PG_PASSWORD": "pw-from-env-7f3", "DAGSTER_PG_DB": "dagster"}


def _validated(path: Path, tmp_path: Path, monkeypatch) -> dict:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / path.stem
    home.mkdir()
    shutil.copy(path, home / "dagster.yaml")
    config, custom_instance_class = dagster_instance_config(str(home))
    assert custom_instance_class is None
    return dict(config)


@pytest.mark.parametrize("path", [POSTGRES, K8S], ids=lambda p: p.name)
def test_shared_instance_files_validate_and_keep_their_connection_in_the_environment(path, tmp_path, monkeypatch):
    config = _validated(path, tmp_path, monkeypatch)
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["hostname"] == {"env": "DAGSTER_PG_HOST"} and db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert db["scheme"] == "postgresql+psycopg2", "dagster-postgres speaks psycopg2, not SQLAlchemy 2.1's default"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    assert config["concurrency"]["pools"]["default_limit"] >= 1


def test_the_k8s_example_shares_the_postgres_storage_and_launches_one_job_per_run(tmp_path, monkeypatch):
    config = _validated(K8S, tmp_path, monkeypatch)
    assert config["storage"] == yaml.safe_load(POSTGRES.read_text())["storage"]
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert launcher["config"]["instance_config_map"] and config["run_monitoring"]["enabled"]


def test_the_k8s_run_launcher_config_fits_dagster_k8s(tmp_path, monkeypatch):
    launcher_module = pytest.importorskip("dagster_k8s", reason="dagster-k8s is not installed here")
    config = _validated(K8S, tmp_path, monkeypatch)
    result = process_config(launcher_module.K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert result.success, result.errors


def test_the_embedded_default_stays_embedded(tmp_path, monkeypatch):
    config = _validated(ROOT / "dagster.yaml", tmp_path, monkeypatch)
    assert "storage" not in config and "run_launcher" not in config, "make demo needs no server"


def test_a_conflicting_queue_setting_is_refused(tmp_path, monkeypatch):
    """Dagster refuses `run_queue` limits beside `concurrency` pools: the files use `concurrency > runs`."""
    broken = yaml.safe_load(POSTGRES.read_text()) | {"run_queue": {"max_concurrent_runs": 2}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(Exception, match="run_queue"):
        _validated(path, tmp_path, monkeypatch)
