"""What every stage's asset shares: the partition, metadata builders, the LLM-run wrapper."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import dagster as dg

from magnet_dagster.defs.partitions import tool_sets
from magnet_dagster.llm.client import LLMClient
from magnet_dagster.llm.pricing import estimated_cost_usd
from magnet_dagster.store.lineage import LineageStore

__all__ = ["Progress", "check_partitions", "counts_table", "md_table", "run_with_llm", "tool_sets"]

T = TypeVar("T")


def md_table(rows: list[dict[str, Any]], limit: int = 10, width: int = 80) -> str:
    """A Markdown preview of rows (cells cut to `width` characters)."""
    if not rows:
        return "_no rows_"
    cols = list(rows[0].keys())

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")[:width]

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        out.append(f"\n_{len(rows) - limit} more rows_")
    return "\n".join(out)


def counts_table(counter: Counter[str] | dict[str, int], key: str = "reason") -> str:
    return md_table([{key: k, "count": v} for k, v in sorted(counter.items(), key=lambda kv: -kv[1])], limit=30)


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
    context.log.info(f"LLM {client.model}: {stats}")
    if client.stats.calls and client.stats.failure_rate > bound:
        raise dg.Failure(
            f"{client.stats.errors} of {client.stats.calls} LLM calls failed "
            f"(bound {bound:.0%}); see llm_calls for the errors"
        )
    cost = estimated_cost_usd(client.backend.name, client.model, stats["input_tokens"], stats["output_tokens"])
    return result, {f"llm_{k}": v for k, v in stats.items()} | {
        "llm_model": client.model,
        "llm_estimated_cost_usd": cost if cost is not None else "unknown (no price for this model)",
    }


class Progress:
    """Logs `done/total` every `every` items, so long stages show they are moving."""

    def __init__(self, context: dg.AssetExecutionContext, total: int, what: str, every: int = 10) -> None:
        self.context, self.total, self.what, self.every, self.done = context, total, what, every, 0

    def tick(self) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            self.context.log.info(f"{self.what}: {self.done}/{self.total}")
