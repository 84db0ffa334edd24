"""What every stage's asset shares: the partition, metadata builders, the LLM-run wrapper."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import dagster as dg

from magnet_dagster.defs.partitions import tool_sets
from magnet_dagster.figures import Plot
from magnet_dagster.figures import markdown as figures_markdown
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.llm.pricing import estimated_cost_usd
from magnet_dagster.previews import breakable, percent, shorten, spread
from magnet_dagster.store.lineage import LineageStore

__all__ = [
    "Progress",
    "check_partitions",
    "counts_table",
    "images",
    "llm_line",
    "rejections_table",
    "run_with_llm",
    "table",
    "tool_sets",
]

T = TypeVar("T")


def _column_type(values: list[Any]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {int}:
        return "int"
    if kinds and kinds <= {int, float}:
        return "float"
    if kinds == {bool}:
        return "bool"
    return "string"


def table(rows: list[dict[str, Any]], limit: int = 12, width: int = 100) -> dg.MetadataValue:
    """Rows as a `TableMetadataValue`, which the UI always shows inline (Markdown over 1000
    characters hides behind "[Show Markdown]"). Numbers stay numbers, anything else becomes one
    line of text cut at a word before `width` characters; past `limit` rows a last row says how
    many more there are. Long words get break opportunities (`previews.breakable`): the UI
    clips a metadata table wider than its column, about 430 px on a 1440 px screen."""
    if not rows:
        return dg.MetadataValue.text("none")
    cols = list(rows[0].keys())
    shown = rows[:limit]

    def cell(v: Any) -> str | int | float | bool | None:
        return v if v is None or isinstance(v, int | float | bool) else breakable(shorten(v, width))

    records = [{c: cell(r.get(c)) for c in cols} for r in shown]
    types = {c: _column_type([r[c] for r in records]) for c in cols}
    if len(rows) > limit:
        records.append({c: (f"… {len(rows) - limit} more rows" if i == 0 else None) for i, c in enumerate(cols)})
        types[cols[0]] = "string"
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, types[c]) for c in cols]),
    )


def counts_table(counter: Counter[str] | dict[str, int], key: str = "reason", what: str = "count") -> dg.MetadataValue:
    """A distribution as a table, largest first, each row with its share of the total."""
    total = sum(counter.values())
    return table(
        [{key: k, what: v, "share": percent(v, total)} for k, v in sorted(counter.items(), key=lambda kv: -kv[1])],
        limit=30,
    )


def rejections_table(rejections: list[dict[str, Any]], limit: int = 10) -> dg.MetadataValue:
    """Dropped paths with turn, rule and reason, a sample across rules."""
    rows = [
        {"path": r["path_id"][:8], "rule": r["rule"], "reason": f"turn {r['turn_index']}: {shorten(r['reason'], 140)}"}
        for r in rejections
    ]
    return table(spread(rows, lambda r: r["rule"], limit=len(rows)), limit=limit, width=160)


def images(*figures: Plot) -> dg.MetadataValue:
    """Plots as base64 PNG images in one Markdown entry (the UI opens it with "[Show Markdown]")."""
    return dg.MetadataValue.md(figures_markdown(figures))


def check_partitions(context: dg.AssetCheckExecutionContext, store: LineageStore) -> list[str]:
    """The tool sets a check looks at: its run's partition only, so one bad tool set never blocks
    another's run; every stored tool set when the check runs outside a partitioned run."""
    if context.has_partition_key:
        return [context.partition_key]
    try:
        key = context.run.tags.get("dagster/partition")
    except dg.DagsterError:  # invoked directly, outside any run
        key = None
    if key:
        return [key]
    return [r["tool_set"] for r in store.query("SELECT tool_set FROM tool_sets ORDER BY tool_set")]


def run_with_llm(
    context: dg.AssetExecutionContext, client: LLMClient, work: Callable[[LLMClient], Awaitable[T]], bound: float
) -> tuple[T, dict[str, Any]]:
    """Run async LLM work, flush the call journal, and fail only past the failure bound."""

    async def main() -> T:
        try:
            return await work(client)
        finally:
            await client.aclose()

    result = asyncio.run(main())
    for path in client.quarantined:
        context.log.warning(f"journal lines the lineage store refused were quarantined to {path}")
    stats = client.stats.as_dict()
    cost = estimated_cost_usd(client.backend.name, client.model, stats["input_tokens"], stats["output_tokens"])
    line = llm_line(client.model, stats, cost)
    context.log.info(line)
    if client.stats.calls and client.stats.failure_rate > bound:
        raise dg.Failure(
            f"{client.stats.errors} of {client.stats.calls} LLM calls failed "
            f"(bound {bound:.0%}); see llm_calls for the errors"
        )
    numbers = {f"llm_{k}": stats[k] for k in ("calls", "cache_hits", "errors", "input_tokens", "output_tokens")}
    return result, {"llm": line} | numbers | ({"llm_cost_usd": cost} if cost is not None else {})


def llm_line(model: str, stats: dict[str, Any], cost: float | None) -> str:
    """One readable line: "LLM smollm2: 26 calls (20 from the cache, 6 new), 0 errors,
    1,040 tokens in / 312 out, estimated cost $0.42"."""
    if cost is None:
        price = "unknown (no price for this model)"
    else:
        price = "$0" if cost == 0 else f"${cost:.2f}" if cost >= 0.01 else "under $0.01"
    return (
        f"LLM {model}: {stats['calls']} calls ({stats['cache_hits']} from the cache, {stats['new_requests']} new), "
        f"{stats['errors']} errors, {stats['input_tokens']:,} tokens in / {stats['output_tokens']:,} out, "
        f"estimated cost {price}"
    )


class Progress:
    """Logs `done/total` every `every` items, so long stages show they are moving."""

    def __init__(self, context: dg.AssetExecutionContext, total: int, what: str, every: int = 10) -> None:
        self.context, self.total, self.what, self.every, self.done = context, total, what, every, 0

    def tick(self) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            self.context.log.info(f"{self.what}: {self.done}/{self.total}")
