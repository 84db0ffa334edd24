"""A synthesis stage's inputs read back from the lineage store: the tool set's options, its
partition (catalog, options and the graph's parameter mappings), and what the export reads.

Kept on the synthesis side so that `store/` knows only rows and the catalog's own objects.
"""

from __future__ import annotations

from magnet_dagster.graph.function_graph import build_graph, edge_mappings
from magnet_dagster.store.counts import partition_counts
from magnet_dagster.store.lineage import LineageStore
from magnet_dagster.store.loaders import catalog_row, load_edges, load_specs
from magnet_dagster.synthesis.export import ExportSources
from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.synthesis.results import Partition


def load_options(store: LineageStore, tool_set: str) -> SynthesisOptions:
    return SynthesisOptions.from_mapping(catalog_row(store, tool_set)["options"])


def load_partition(store: LineageStore, tool_set: str, run_id: str) -> Partition:
    """The catalog, options and the graph's parameter mappings of one tool set, for a stage run."""
    return Partition(
        tool_set,
        run_id,
        load_specs(store, tool_set),
        load_options(store, tool_set),
        edge_mappings(load_edges(store, tool_set)),
    )


def load_export_sources(store: LineageStore, tool_set: str) -> ExportSources:
    """What the export and its card read besides the kept trajectories: preference pairs, paths,
    counts per stage, and the function graph with each function's category (for its plot)."""
    specs = load_specs(store, tool_set)
    return ExportSources(
        store.rows("preference_pairs", tool_set, "pair_id"),
        store.rows("paths", tool_set),
        partition_counts(store, tool_set),
        build_graph(specs, load_edges(store, tool_set)),
        {name: spec.category or "-" for name, spec in specs.items()},
    )
