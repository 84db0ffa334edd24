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

from magnet_dagster.defs.common import counts_table, md_table, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource
from magnet_dagster.tools.catalog import Catalog, load_catalog
from magnet_dagster.tools.spec import ToolSetError

#: the reader's traceback, for whoever turns this logger to DEBUG; the run shows one line
log = logging.getLogger(__name__)


@dg.asset(partitions_def=tool_sets, group_name="catalog", kinds={"duckdb"})
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
    kept, rejected, options = catalog.kept, catalog.rejected, catalog.options
    return {
        "dagster/row_count": len(kept),
        "functions": len(kept),
        "rejected": len(rejected),
        "executor": catalog.source.executor.get("kind"),
        "content_hash": catalog.source.content_hash,
        "ignored_files": dg.MetadataValue.md("\n".join(f"- {n}" for n in catalog.source.ignored) or "_none_"),
        "categories": dg.MetadataValue.md(counts_table(Counter(s.category or "-" for s in kept), "category")),
        "rejections": dg.MetadataValue.md(
            md_table(
                [{"file": r.source_file, "function": r.name, "rule": r.rule, "reason": r.reason} for r in rejected],
                limit=50,
            )
        ),
        "preview": dg.MetadataValue.md(
            md_table(
                [
                    {
                        "name": s.name,
                        "category": s.category,
                        "required": ", ".join(s.required),
                        "description": s.description,
                    }
                    for s in kept
                ]
            )
        ),
        "options": dg.MetadataValue.json(vars(options) | {"split_fractions": list(options.split_fractions)}),
    }
