"""The Dagster UI in a real browser: each asset page tells its stage's story.

The bundled `bfcl_demo` tool set is materialized with the schema-following fake as teacher and
student (through `dg.materialize`, against a real Dagster instance on disk in `DAGSTER_HOME`:
seconds instead of the real local server's minutes; the real server's runs are covered by
test_pipeline.py, and the pages read the same metadata either way). Then `dagster-webserver`
serves that instance on a free loopback port, and headless Chromium (Debian's `chromium`
from apt, driven by playwright with `executable_path`; playwright never downloads a browser)
opens the asset pages of `function_graph`, `queries`, `training_splits` and
`student_evaluation`, and the global asset lineage. Each page must show its funnel line, a plot
that really renders (an <img> with a natural width, in the "[Show Markdown]" dialog: the UI
shows Markdown over 1000 characters there) and the links to the outputs, and no page may show
an error. Screenshots go to `$MAGNET_SCREENSHOTS` (default `.magnet/screenshots/`).

Skipped only when /usr/bin/chromium is absent; `.ci/run` installs it.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from magnet_dagster.store.lineage import LineageStore
from tests.conftest import ROOT
from tests.defs.test_assets_fast import CHECKS, PIPELINE, RESOURCES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TOOL_SET = "bfcl_demo"
#: what a page must never show (Dagster's error states, a Python error, a GraphQL failure)
ERROR_TEXTS = ["Something went wrong", "An unexpected error", "PythonError", "Unexpected GraphQL error", "Error loading"]
SERVER_START_S = 180
PAGE_TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"),
]


def screenshots_dir() -> Path:
    return Path(os.environ.get("MAGNET_SCREENSHOTS", ROOT / ".magnet" / "screenshots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_answering(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"dagster-webserver did not answer {url} within {SERVER_START_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[dict]:
    """A materialized `bfcl_demo` partition and a webserver on loopback that serves it."""
    root = tmp_path_factory.mktemp("ui")
    env = {
        "DAGSTER_HOME": str(root / "dagster_home"),
        "MAGNET_HOME": str(root / "magnet"),
        "MAGNET_TOOL_SETS_DIR": str(root / "tool_sets"),
    }
    (root / "dagster_home").mkdir()
    # nux off: no "Join the Dagster community" dialog over the pages
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    shutil.copytree(ROOT / "tool_sets" / TOOL_SET, root / "tool_sets" / TOOL_SET)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            instance.add_dynamic_partitions("tool_sets", [TOOL_SET])
            result = dg.materialize(PIPELINE + CHECKS, instance=instance, partition_key=TOOL_SET, resources=RESOURCES)
            assert result.success
        meta = {
            e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()
        }
        port, log = _free_port(), root / "webserver.log"
        server = Path(sys.executable).with_name("dagster-webserver")
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(server), "-h", "127.0.0.1", "-p", str(port), "-m", "magnet_dagster.definitions"],
                cwd=ROOT,
                env=os.environ | env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_until_answering(f"http://127.0.0.1:{port}/server_info", proc, log)
            yield {"url": f"http://127.0.0.1:{port}", "meta": meta, "store": LineageStore(root / "magnet" / "lineage.duckdb")}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=PAGE_TIMEOUT_MS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()


def _shoot(page, name: str, height: int = 2600) -> Path:
    """A screenshot of the whole page: the UI scrolls inside its own panes, so the viewport is
    made tall for the shot (and put back after)."""
    directory = screenshots_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": height})
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


def _assert_no_error(page) -> None:
    body = page.inner_text("body")
    shown = [t for t in ERROR_TEXTS if t in body]
    assert not shown, f"{page.url} shows {shown}"
    assert not page.errors, f"{page.url} raised {page.errors}"


def _open_asset(page, ui, asset: str) -> None:
    page.goto(f"{ui['url']}/assets/{asset}", wait_until="domcontentloaded")
    funnel = ui["meta"][asset]["funnel"].value
    page.get_by_text(funnel, exact=True).first.wait_for(state="visible")


def _metadata_row(page, label: str):
    return page.locator("tr", has=page.get_by_text(label, exact=True)).last


def _open_plot(page, label: str) -> int:
    """Open a plot's "[Show Markdown]" dialog; the natural width of its first image."""
    _metadata_row(page, label).get_by_text("[Show Markdown]").click()
    image = page.locator("[role=dialog] img").first
    image.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=30_000)
    return image.evaluate("img => img.naturalWidth")


def _close_dialog(page) -> None:
    page.keyboard.press("Escape")
    page.locator("[role=dialog]").first.wait_for(state="hidden")


def test_function_graph_page_shows_its_funnel_the_drawn_graph_and_no_error(ui, page):
    _open_asset(page, ui, "function_graph")
    assert page.get_by_text("judged pairs became edges").first.is_visible()
    _assert_no_error(page)
    _shoot(page, "function_graph")
    assert _open_plot(page, "graph_plot") > 100
    page.locator("[role=dialog]").first.screenshot(path=str(screenshots_dir() / "function_graph_plot.png"))
    _close_dialog(page)
    assert _open_plot(page, "degree_histogram") > 100
    _assert_no_error(page)


def test_queries_page_shows_yield_rules_and_a_readable_preview(ui, page):
    _open_asset(page, ui, "queries")
    meta = ui["meta"]["queries"]
    assert page.get_by_text(meta["yield"].value, exact=True).first.is_visible()
    preview = _metadata_row(page, "preview")
    calls = [r.data["reference calls"] for r in meta["preview"].value.records]
    first_call = next(c for c in calls if c not in (None, "—"))
    assert preview.get_by_text(first_call, exact=True).first.is_visible()
    _assert_no_error(page)
    _shoot(page, "queries")


def test_training_splits_page_links_every_export_and_the_lineage_db(ui, page):
    _open_asset(page, ui, "training_splits")
    meta = ui["meta"]["training_splits"]
    for key in ("sft_jsonl", "sft_parquet", "preference_jsonl", "dataset_card", "lineage_db"):
        assert page.get_by_text(meta[key].value, exact=True).first.is_visible(), key
    _assert_no_error(page)
    _shoot(page, "training_splits")
    assert _open_plot(page, "yield_funnel") > 100
    page.locator("[role=dialog]").first.screenshot(path=str(screenshots_dir() / "training_splits_funnel.png"))
    _close_dialog(page)
    assert _open_plot(page, "distributions") > 100


def test_student_evaluation_page_shows_scores_a_plot_and_its_links(ui, page):
    _open_asset(page, ui, "student_evaluation")
    meta = ui["meta"]["student_evaluation"]
    for key in ("exports", "lineage_db"):
        assert page.get_by_text(meta[key].value, exact=True).first.is_visible(), key
    _assert_no_error(page)
    _shoot(page, "student_evaluation")
    assert _open_plot(page, "scores_plot") > 100
    page.locator("[role=dialog]").first.screenshot(path=str(screenshots_dir() / "student_evaluation_plot.png"))


def test_global_lineage_shows_the_pipeline_as_one_group_and_its_chain_when_opened(ui, page):
    page.goto(f"{ui['url']}/asset-groups", wait_until="domcontentloaded")
    page.get_by_text("magnet_pipeline", exact=True).first.wait_for(state="visible")
    assert page.get_by_text("bfcl", exact=True).first.is_visible()
    _assert_no_error(page)
    _shoot(page, "lineage", height=1000)
    page.goto(f"{ui['url']}/asset-groups?expanded=global@global:magnet_pipeline", wait_until="domcontentloaded")
    for asset in [a.key.to_user_string() for a in PIPELINE]:
        page.get_by_text(asset, exact=True).first.wait_for(state="visible")
    _assert_no_error(page)
    _shoot(page, "lineage_magnet_pipeline", height=1000)
