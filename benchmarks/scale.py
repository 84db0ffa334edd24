"""Paper-scale run: every pipeline asset, through Dagster, against a scripted teacher and student on loopback.

A generated ToolBench-style catalog (`scale_catalog`, default 500 functions; `--functions
2000` for the large run, several sizes for a growth table) is materialized stage by stage
with `dg.materialize` in this process, the LLM resources set to the real OpenAI-compatible
backend pointed at `scale_server` (a separate process answering in the shapes the requests
ask for, after a fixed latency) with the client's concurrency at 64. So the client, its
cache and journal, the HTTP path, the lineage store and Dagster are all what is measured.

Per stage: wall time; LLM calls from `llm_calls` (the stage's run), new requests among them;
the client's throughput as a fraction of ideal (new requests / (wall x concurrency /
latency)); this process's CPU seconds and the server's; peak RSS during the stage (VmHWM,
reset before each stage); the lineage DB's size after it. At the end: end-to-end time
against the sum of ideal LLM time (requests x latency / concurrency), the physical limit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from benchmarks.scale_catalog import write_tool_set
from benchmarks.scale_server import ScriptedServer, scripted_server
from magnet_dagster.definitions import defs
from magnet_dagster.defs.resources import LineageStoreResource, LLMResource
from magnet_dagster.store.lineage import LineageStore

#: the pipeline in order, with the table whose rows say the stage made something
STAGES = {
    "function_catalog": "functions",
    "function_graph": "graph_edges",
    "signature_paths": "paths",
    "queries": "turns",
    "trajectories": "trajectories",
    "training_splits": "splits",
    "student_evaluation": "eval_results",
}
#: Dagster's console log at warnings only: the benchmark prints its own lines
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
#: the method's defaults (README, `synthesis/options.py`), written out so the run says what it used
PAPER_OPTIONS: dict[str, Any] = {
    "candidates_per_function": 30,
    "walk_steps": 7,
    "walks_per_node": 1,
    "merge_p": 0.3,
    "insert_p": 0.3,
    "split_p": 0.2,
    "distractor_tools": 2,
    "max_attempts": 3,
    "negatives": True,
    "seed": 0,
}


@dataclass
class StageFigures:
    stage: str
    wall_s: float
    ok: bool
    rows: int
    calls: int = 0
    new_requests: int = 0
    cache_hits: int = 0
    errors: int = 0
    server_requests: int = 0
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    db_mb: float = 0.0
    cache_rows_at_start: int = 0

    def ideal_s(self, latency_s: float, concurrency: int) -> float:
        """The LLM time the stage cannot beat: its requests, `concurrency` at a time, `latency_s` each."""
        return self.new_requests * latency_s / concurrency

    def fraction_of_ideal(self, latency_s: float, concurrency: int) -> float | None:
        return self.ideal_s(latency_s, concurrency) / self.wall_s if self.new_requests and self.wall_s else None


@dataclass
class ScaleRun:
    functions: int
    latency_s: float
    concurrency: int
    options: dict[str, Any]
    stages: list[StageFigures] = field(default_factory=list)
    paths: int = 0
    multi_turn_paths: int = 0

    @property
    def wall_s(self) -> float:
        return sum(s.wall_s for s in self.stages)

    @property
    def ideal_s(self) -> float:
        return sum(s.ideal_s(self.latency_s, self.concurrency) for s in self.stages)

    @property
    def ok(self) -> bool:
        return len(self.stages) == len(STAGES) and all(s.ok and s.rows > 0 for s in self.stages)


# ------------------------------------------------------------------ measuring one process


def _reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux `clear_refs` 5); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """VmHWM (since the last reset) in MiB, else the lifetime `ru_maxrss`."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _db_mb(path: Path) -> float:
    files = [path, path.with_name(path.name + ".wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the run and restore them after (the smoke test runs in pytest)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------ the run


def _pipeline() -> tuple[list[Any], list[Any]]:
    """The definitions' pipeline assets (not `bfcl_multi_turn`, which replays BFCL's own data) and checks."""
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.key.path[-1] in STAGES]
    return assets, list(defs.asset_checks or [])


def _stage(
    stage: str,
    instance: dg.DagsterInstance,
    key: str,
    resources: dict[str, Any],
    store: LineageStore,
    server: ScriptedServer,
) -> StageFigures:
    assets, checks = _pipeline()
    cache_rows = store.query("SELECT count(*) AS n FROM llm_cache")[0]["n"]
    before = server.stats()
    cpu = _cpu_s()
    _reset_peak_rss()
    started = time.perf_counter()
    result = dg.materialize(
        [*assets, *checks],
        instance=instance,
        partition_key=key,
        resources=resources,
        selection=dg.AssetSelection.assets(stage),
        raise_on_error=False,
        run_config=QUIET,
    )
    wall = time.perf_counter() - started
    peak = _peak_rss_mb()
    cpu = _cpu_s() - cpu
    after = server.stats()
    calls = store.query(
        "SELECT count(*) AS calls, coalesce(sum(cache_hit::INT), 0) AS hits, "
        "coalesce(sum((outcome <> 'ok')::INT), 0) AS errors FROM llm_calls WHERE run_id = ?",
        [result.run_id],
    )[0]
    return StageFigures(
        stage=stage,
        wall_s=wall,
        ok=result.success,
        rows=store.count(STAGES[stage], key),
        calls=calls["calls"],
        new_requests=calls["calls"] - calls["hits"],
        cache_hits=calls["hits"],
        errors=calls["errors"],
        server_requests=after["requests"] - before["requests"],
        cpu_s=cpu,
        server_cpu_s=after["cpu_s"] - before["cpu_s"],
        peak_rss_mb=peak,
        db_mb=_db_mb(store.path),
        cache_rows_at_start=cache_rows,
    )


def run_scale(
    functions: int,
    latency_s: float,
    concurrency: int,
    workdir: Path,
    options: dict[str, Any] | None = None,
    progress: bool = True,
) -> ScaleRun:
    """Every stage for a generated catalog of `functions` functions, in a fresh MAGNET_HOME under `workdir`."""
    options = dict(PAPER_OPTIONS | (options or {}))
    key = f"scale_{functions}"
    tool_sets, home = workdir / "tool_sets", workdir / "home"
    write_tool_set(tool_sets / key, functions, seed=0, options=options)
    run = ScaleRun(functions, latency_s, concurrency, options)
    (workdir / "dagster").mkdir(parents=True, exist_ok=True)
    with (
        scripted_server(latency_s) as server,
        _environment(
            {
                "MAGNET_HOME": str(home),
                "MAGNET_TOOL_SETS_DIR": str(tool_sets),
                "MAGNET_TEACHER": "openai",
                "MAGNET_TEACHER_BASE_URL": server.base_url,
                "MAGNET_TEACHER_MODEL": "scripted-teacher",
                "MAGNET_STUDENT": "openai",
                "MAGNET_STUDENT_BASE_URL": server.base_url,
                "MAGNET_STUDENT_MODEL": "scripted-student",
                "MAGNET_TEACHER_BATCH": "off",
            }
        ),
        dg.instance_for_test(temp_dir=str(workdir / "dagster")) as instance,
    ):
        instance.add_dynamic_partitions("tool_sets", [key])
        resources = {
            "lineage": LineageStoreResource(),
            "teacher": LLMResource(role="teacher", concurrency=concurrency),
            "student": LLMResource(role="student", concurrency=concurrency),
        }
        store = LineageStore(home / "lineage.duckdb")
        for stage in STAGES:
            figures = _stage(stage, instance, key, resources, store, server)
            run.stages.append(figures)
            if progress:
                print(f"  {functions} functions: {_row(figures, latency_s, concurrency)}", flush=True)
            if not figures.ok:
                break
        shapes = store.query("SELECT shape, count(*) AS n FROM paths WHERE tool_set = ? GROUP BY shape", [key])
        run.paths = sum(r["n"] for r in shapes)
        run.multi_turn_paths = sum(r["n"] for r in shapes if r["shape"] in (None, "multi_turn"))
    return run


# ------------------------------------------------------------------ printing


HEADER = (
    f"{'stage':<19}{'wall s':>8}{'ideal s':>8}{'of ideal':>9}{'rows':>7}{'calls':>7}{'new':>7}"
    f"{'cpu s':>7}{'srv cpu':>8}{'peak MB':>8}{'db MB':>7}{'cache':>7}"
)


def _row(s: StageFigures, latency_s: float, concurrency: int) -> str:
    """One stage's line; `cache` is the `llm_cache` rows when the stage started (what the client loads)."""
    fraction = s.fraction_of_ideal(latency_s, concurrency)
    ideal = s.ideal_s(latency_s, concurrency)
    return (
        f"{s.stage:<19}{s.wall_s:>8.1f}{ideal:>8.1f}{(f'{fraction:.3f}' if fraction is not None else '-'):>9}"
        f"{s.rows:>7}{s.calls:>7}{s.new_requests:>7}{s.cpu_s:>7.1f}{s.server_cpu_s:>8.1f}"
        f"{s.peak_rss_mb:>8.0f}{s.db_mb:>7.1f}{s.cache_rows_at_start:>7}"
        + ("" if s.ok else "  FAILED")
        + ("" if s.server_requests == s.new_requests else f"  (server saw {s.server_requests} requests)")
    )


def report(run: ScaleRun) -> str:
    lines = [
        f"scale run: {run.functions} functions, {run.paths} paths ({run.multi_turn_paths} multi-turn), "
        f"latency {run.latency_s * 1000:.0f} ms, concurrency {run.concurrency}",
        "  options: " + ", ".join(f"{k}={v}" for k, v in run.options.items()),
        "  " + HEADER,
    ]
    lines += ["  " + _row(s, run.latency_s, run.concurrency) for s in run.stages]
    requests = sum(s.new_requests for s in run.stages)
    calls = sum(s.calls for s in run.stages)
    lines.append(
        f"  end to end {run.wall_s:.1f} s for {calls} LLM calls ({requests} new requests); ideal LLM time "
        f"{run.ideal_s:.1f} s (requests x {run.latency_s * 1000:.0f} ms / {run.concurrency}): "
        f"{run.ideal_s / run.wall_s if run.wall_s else 0:.3f} of the physical limit"
    )
    lines.append(
        "  calls per function: " + ", ".join(f"{s.stage} {s.calls / run.functions:.2f}" for s in run.stages if s.calls)
    )
    return "\n".join(lines)


def growth(small: ScaleRun, large: ScaleRun) -> str:
    """How each stage grows from one size to the next: time and calls against functions and paths."""
    f_ratio = large.functions / small.functions
    p_ratio = large.paths / small.paths if small.paths else float("nan")
    lines = [
        f"growth {small.functions} -> {large.functions} functions (x{f_ratio:.2f}), "
        f"paths {small.paths} -> {large.paths} (x{p_ratio:.2f})",
        f"  {'stage':<19}{'time x':>8}{'calls x':>9}{'time x / paths x':>18}",
    ]
    for a, b in zip(small.stages, large.stages):
        t = b.wall_s / a.wall_s if a.wall_s else float("nan")
        c = f"{b.calls / a.calls:.2f}" if a.calls else "-"
        lines.append(f"  {a.stage:<19}{t:>8.2f}{c:>9}{t / p_ratio:>18.2f}")
    lines.append(
        f"  {'end to end':<19}{large.wall_s / small.wall_s:>8.2f}{'':>9}{large.wall_s / small.wall_s / p_ratio:>18.2f}"
    )
    return "\n".join(lines)


def _option(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    return name.strip(), json.loads(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--functions",
        type=int,
        nargs="+",
        default=[500],
        help="catalog sizes to run, smallest first (several print a growth table)",
    )
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a synthesis option over the paper defaults, e.g. walk_steps=3",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="run in DIR/scale_N and keep it (MAGNET_HOME, tool sets); a second run there is served from the cache",
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    options = dict(args.option)
    runs = []
    for n in args.functions:
        workdir = (args.keep / f"scale_{n}") if args.keep else Path(tempfile.mkdtemp(prefix=f"magnet-scale-{n}-"))
        try:
            runs.append(run_scale(n, args.latency_ms / 1000, args.concurrency, workdir, options))
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        print(report(runs[-1]), flush=True)
    for small, large in itertools.pairwise(runs):
        print(growth(small, large), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps([asdict(r) | {"wall_s": r.wall_s, "ideal_s": r.ideal_s} for r in runs], indent=1)
        )
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
