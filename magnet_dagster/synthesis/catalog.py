"""Stage 1's core: a tool set's catalog, found in the watched folder, read, every function validated.

The one function the `function_catalog` asset calls. A file that cannot be read raises
`ToolSetError` with one line naming the file and the reason; a bad function or line is a
`Rejection` and the rest goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from magnet_dagster.synthesis.options import SynthesisOptions
from magnet_dagster.tools.formats import ToolSetSource, find_tool_set, read_tool_set
from magnet_dagster.tools.spec import FunctionSpec, ToolSetError
from magnet_dagster.tools.validation import Rejection, validate_functions


@dataclass
class Catalog:
    path: Path
    source: ToolSetSource
    options: SynthesisOptions
    kept: list[FunctionSpec]
    rejected: list[Rejection]


def load_catalog(key: str, directory: Path | None = None) -> Catalog:
    """Read and validate tool set `key`; raises ToolSetError when nothing in it is usable."""
    path = find_tool_set(key, directory)
    source = read_tool_set(path)
    options = SynthesisOptions.from_mapping(source.options, f"{path}/toolset.yaml")
    kept, rejected = validate_functions(source.functions)
    rejected = list(source.rejections) + rejected
    if not kept:
        reasons = "; ".join(r.reason for r in rejected[:5]) or "no functions found"
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
        raise ToolSetError(f"{path}: no valid function: {reasons}{more}")
    return Catalog(path, source, options, kept, rejected)
