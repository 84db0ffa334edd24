"""Stage 1, `function_catalog`: read one tool set, validate each function, store the catalog.

Writes `tool_sets`, `functions`, `rejected_functions` (one transaction per partition).
A bad function (or JSONL line) is rejected with file, name and rule; an unreadable file
fails this partition only, with one line naming the file and the reason (the reader's
traceback goes to the Python debug log of this module, not into the run's event log).
Rerun: `dagster asset materialize --select function_catalog --partition KEY`.
"""

import logging
from collections import Counter

import dagster as dg

from magnet_dagster.defs.common import counts_table, table, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource
from magnet_dagster.previews import funnel, percent, shorten, spread, without_shared_prefix
from magnet_dagster.synthesis.catalog import Catalog, load_catalog
from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.tools.spec import ToolSetError

#: the reader's traceback, for whoever turns this logger to DEBUG; the run shows one line
log = logging.getLogger(__name__)


@dg.asset(partitions_def=tool_sets, group_name="magnet_pipeline", kinds={"duckdb"})
def function_catalog(context: dg.AssetExecutionContext, lineage: LineageStoreResource) -> dg.MaterializeResult:
    """Every function of the tool set as a validated FunctionSpec."""
    key, run_id = context.partition_key, context.run.run_id
    try:
        catalog = load_catalog(key)
    except (ToolSetError, OSError) as exc:
        log.debug("reading tool set %r failed", key, exc_info=True)
        raise dg.Failure(description=f"tool set {key!r}: {exc}") from None
    source = catalog.source
    lineage.get().replace_partition(
        key,
        {
            "tool_sets": [
                {
                    "tool_set": key,
                    "run_id": run_id,
                    "source_path": str(catalog.path),
                    "content_hash": source.content_hash,
                    "executor": source.executor,
                    "options": source.options,
                }
            ],
            "functions": [s.as_row(key, run_id) for s in catalog.kept],
            "rejected_functions": [r.as_row(key, run_id) for r in catalog.rejected],
        },
    )
    for note in source.ignored:
        context.log.info(note)
    for r in catalog.rejected:
        context.log.warning(f"rejected: {r.reason}")
    context.log.info(f"{key}: {len(catalog.kept)} functions kept, {len(catalog.rejected)} rejected")
    return dg.MaterializeResult(metadata=catalog_metadata(catalog))


def catalog_metadata(catalog: Catalog) -> dict:
    """Funnel line first, then the numbers, the categories, the rejections and a preview."""
    kept, rejected = catalog.kept, catalog.rejected
    total = len(kept) + len(rejected)
    funnel_line = funnel(len(kept), total, "functions passed validation")
    if rejected:
        funnel_line += f"; {len(rejected)} rejected (see rejections)"
    descriptions = without_shared_prefix([s.description for s in kept], [s.category for s in kept])
    rows = [
        {
            "function": s.name,
            "description": shorten(d, 100) + (f" (needs {', '.join(s.required)})" if s.required else ""),
        }
        for s, d in zip(kept, descriptions)
    ]
    category = {s.name: s.category or "-" for s in kept}
    return {
        "funnel": funnel_line,
        "dagster/row_count": len(kept),
        "functions": len(kept),
        "rejected": len(rejected),
        "executor": catalog.source.executor.get("kind"),
        "content_hash": catalog.source.content_hash,
        "ignored_files": dg.MetadataValue.md("\n".join(f"- {n}" for n in catalog.source.ignored) or "_none_"),
        "categories": counts_table(Counter(s.category or "-" for s in kept), "category", "functions"),
        "rejections": table(
            [{"file": r.source_file, "function": r.name, "rule": r.rule, "reason": r.reason} for r in rejected],
            limit=50,
        ),
        "preview": table(spread(rows, lambda r: category[r["function"]], limit=12), width=160),
        "options": table(option_rows(catalog.options), limit=30),
    }


def option_rows(options: SynthesisOptions) -> list[dict[str, str]]:
    """The tool set's synthesis options, one row each, values as a person writes them."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, dict):
            return ", ".join(f"{k} {percent(x, 1) if isinstance(x, float) else x}" for k, x in v.items())
        if isinstance(v, tuple | list):
            return " / ".join(str(x) for x in v)
        return str(v)

    return [{"option": k, "value": value(v)} for k, v in vars(options).items()]
