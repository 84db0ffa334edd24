"""Stage 1, `function_catalog`: read one tool set, validate each function, store the catalog.

Writes `tool_sets`, `functions`, `rejected_functions` (one transaction per partition).
A bad function is rejected with file, name and rule; an unreadable file fails this
partition only. Rerun: `dagster asset materialize --select function_catalog --partition KEY`.
"""


from collections import Counter
from pathlib import Path

import dagster as dg

from magnet_dagster import config
from magnet_dagster.defs.common import counts_table, md_table, tool_sets
from magnet_dagster.defs.resources import LineageStoreResource
from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.tools.formats import read_tool_set, tool_set_name
from magnet_dagster.tools.spec import ToolSetError
from magnet_dagster.tools.validation import validate_functions


def find_tool_set(key: str, directory: Path | None = None) -> Path:
    """The file or folder in the watched directory whose name is the partition key."""
    directory = directory or config.tool_sets_dir()
    for entry in sorted(directory.iterdir()) if directory.is_dir() else []:
        try:
            if tool_set_name(entry) == key:
                return entry
        except ToolSetError:
            continue
    raise ToolSetError(f"tool set {key!r} not found in {directory}")


@dg.asset(partitions_def=tool_sets, group_name="catalog", kinds={"duckdb"})
def function_catalog(context: dg.AssetExecutionContext, lineage: LineageStoreResource) -> dg.MaterializeResult:
    """Every function of the tool set as a validated FunctionSpec."""
    key = context.partition_key
    try:
        path = find_tool_set(key)
        source = read_tool_set(path)
        options = SynthesisOptions.from_mapping(source.options, f"{path}/toolset.yaml")
    except (ToolSetError, OSError) as exc:
        raise dg.Failure(description=f"tool set {key!r}: {exc}") from exc
    kept, rejected = validate_functions(source.functions)
    if not kept:
        raise dg.Failure(description=f"tool set {key!r}: no valid function "
                         f"({len(rejected)} rejected: {[r.reason for r in rejected[:5]]})")
    store = lineage.get()
    store.replace_partition(key, {
        "tool_sets": [{"tool_set": key, "run_id": context.run.run_id, "source_path": str(path),
                       "content_hash": source.content_hash, "executor": source.executor,
                       "options": source.options}],
        "functions": [s.as_row(key, context.run.run_id) for s in kept],
        "rejected_functions": [r.as_row(key, context.run.run_id) for r in rejected],
    })
    for r in rejected:
        context.log.warning(f"rejected: {r.reason}")
    context.log.info(f"{key}: {len(kept)} functions kept, {len(rejected)} rejected")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(kept),
        "functions": len(kept),
        "rejected": len(rejected),
        "executor": source.executor.get("kind"),
        "content_hash": source.content_hash,
        "categories": dg.MetadataValue.md(counts_table(Counter(s.category or "-" for s in kept), "category")),
        "rejections": dg.MetadataValue.md(md_table([{"file": r.source_file, "function": r.name, "rule": r.rule,
                                                      "reason": r.reason} for r in rejected], limit=50)),
        "preview": dg.MetadataValue.md(md_table([{"name": s.name, "category": s.category,
                                                   "required": ", ".join(s.required),
                                                   "description": s.description} for s in kept])),
        "options": dg.MetadataValue.json(vars(options) | {"split_fractions": list(options.split_fractions)}),
    })
