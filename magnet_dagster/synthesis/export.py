"""Exports a trainer loads directly, and the dataset card.

SFT rows are TRL's conversational tool-calling format (`messages` with OpenAI-shaped
`tool_calls` and `tool` messages, plus `tools`); preference rows are `prompt` / `chosen` /
`rejected` at turn level, with the `tools` the conversation offered. Nested fields that vary
in shape (tool schemas, call arguments) are kept as JSON strings in Parquet so every row has
one schema: call arguments as OpenAI's JSON string, and the `tools` column as Arrow's JSON
extension type (Parquet's JSON logical type), which `datasets` decodes back into the list
of schemas that `apply_chat_template(tools=...)` takes, while pandas and DuckDB read JSON text.
The card's plots (PNG) are written beside the files, and the card shows them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import networkx as nx
import pyarrow as pa
import pyarrow.parquet as pq

from magnet_dagster.figures import Plot, degree_plot, funnel_plot, graph_plot, histogram_plot, mix_plot
from magnet_dagster.graph.paths import MULTI_TURN, SignaturePath, operation_mix
from magnet_dagster.previews import compact_calls
from magnet_dagster.store.counts import PartitionCounts, stage_yields
from magnet_dagster.synthesis.distillation import contains_hint
from magnet_dagster.synthesis.splits import SplitAssignment
from magnet_dagster.tools.calls import leaves
from magnet_dagster.tools.messages import announced_tools
from magnet_dagster.tools.spec import FunctionSpec

#: the files `export_partition` writes, by the name the UI and the report give them
EXPORT_FILES = {
    "sft_jsonl": "sft.jsonl",
    "sft_parquet": "sft.parquet",
    "preference_jsonl": "preference.jsonl",
    "preference_parquet": "preference.parquet",
    "dataset_card": "dataset_card.md",
}
#: the plot `student_evaluation` writes beside the exports (after the card was written)
EVALUATION_PLOT = "evaluation_scores.png"


def export_files(directory: Path) -> dict[str, Path]:
    """Where each export lives: `{"sft_jsonl": <directory>/sft.jsonl, ...}`."""
    return {key: directory / name for key, name in EXPORT_FILES.items()}


def sft_row(trajectory: dict[str, Any], split: str) -> dict[str, Any]:
    return {
        "messages": trajectory["messages"],
        "tools": trajectory["tools"],
        "split": split,
        "trajectory_id": trajectory["trajectory_id"],
        "path_id": trajectory["path_id"],
    }


def preference_row(pair: dict[str, Any], split: str, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A DPO row; `tools` (the trajectory's) is what the prompt is rendered with, as in the SFT row."""
    return {
        "prompt": pair["prompt"],
        "chosen": pair["chosen"],
        "rejected": pair["rejected"],
        "tools": tools if tools is not None else pair.get("tools") or [],
        "error_type": pair["error_type"],
        "split": split,
        "pair_id": pair["pair_id"],
        "trajectory_id": pair["trajectory_id"],
    }


def _message_for_parquet(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": m["role"],
        "content": m.get("content"),
        "tool_calls": [
            {
                "id": tc["id"],
                "type": "function",
                "function": {"name": tc["function"]["name"], "arguments": tc["function"]["arguments"]},
            }
            for tc in m.get("tool_calls") or []
        ]
        or None,
        "tool_call_id": m.get("tool_call_id"),
        "name": m.get("name"),
    }


def _for_parquet(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("messages", "prompt", "chosen", "rejected"):
            out[key] = [_message_for_parquet(m) for m in value]
        elif key == "tools":
            out[key] = json.dumps(value)
        else:
            out[key] = value
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    table = pa.Table.from_pylist([_for_parquet(r) for r in rows])
    if "tools" in table.column_names:
        i = table.schema.get_field_index("tools")
        table = table.set_column(i, pa.field("tools", pa.json_()), table["tools"].cast(pa.json_()))
    pq.write_table(table, tmp)
    tmp.replace(path)


def _scalars(value: Any) -> list[Any]:
    return [v for v in leaves(value) if v is not None and not isinstance(v, bool)]


def _result_values(content: Any) -> set[str]:
    try:
        return {json.dumps(v) for v in _scalars(json.loads(content))}
    except (TypeError, ValueError):
        return set()


def conversation_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Distributions a user would rather see than read: turns per conversation, calls per turn,
    assistant steps per call turn, and the dependency rate (the share of calls with an argument
    equal to a value an earlier tool result returned, i.e. taken from an earlier output)."""
    turns: Counter[int] = Counter()
    calls_per_turn: Counter[int] = Counter()
    steps_per_turn: Counter[int] = Counter()
    calls = dependent = 0
    for row in rows:
        seen: set[str] = set()
        per_turn: list[tuple[int, int]] = []  # (calls, steps) per user turn
        for m in row["messages"]:
            if m["role"] == "user":
                per_turn.append((0, 0))
            elif m["role"] == "tool":
                seen |= _result_values(m.get("content"))
            elif m["role"] == "assistant" and m.get("tool_calls") and per_turn:
                n, steps = per_turn[-1]
                per_turn[-1] = (n + len(m["tool_calls"]), steps + 1)
                for tc in m["tool_calls"]:
                    calls += 1
                    args = _scalars(json.loads(tc["function"]["arguments"] or "{}"))
                    dependent += any(json.dumps(a) in seen for a in args)
        turns[len(per_turn)] += 1
        calls_per_turn.update(n for n, _ in per_turn)
        steps_per_turn.update(steps for n, steps in per_turn if n)
    return {
        "user_turns_per_conversation": dict(sorted(turns.items())),
        "calls_per_turn": dict(sorted(calls_per_turn.items())),
        "steps_per_call_turn": dict(sorted(steps_per_turn.items())),
        "dependency_rate": {
            "calls": calls,
            "from_earlier_outputs": dependent,
            "rate": f"{dependent / calls:.1%}" if calls else "n/a",
        },
    }


@dataclass
class CardFacts:
    """What the dataset card reports for one tool set."""

    tool_set: str
    counts: dict[str, Any]
    yields: dict[str, Any]
    operation_mix: dict[str, int]
    stats: dict[str, Any]
    examples: list[dict[str, Any]]
    #: shape -> (paths, exported conversations)
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: per operation: paths, with_queries, distilled, exported
    survival: list[dict[str, Any]] = field(default_factory=list)
    #: stage, rule, paths
    rejections: list[dict[str, Any]] = field(default_factory=list)
    #: (file name, title) of the plots written beside the card
    plots: list[tuple[str, str]] = field(default_factory=list)


def _table(rows: list[dict[str, Any]], empty: str) -> list[str]:
    if not rows:
        return [empty]
    cols = list(rows[0])
    return [
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows),
    ]


def dataset_card(facts: CardFacts) -> str:
    """The card a user reads first."""
    lines = [
        f"# Dataset card: `{facts.tool_set}`",
        "",
        "Multi-turn tool-use conversations synthesised with the Magnet method "
        "(function graph -> signature paths -> back-and-forth translation -> context distillation).",
        "",
        "## Counts",
        "",
        *_table([{"what": k, "rows": v} for k, v in facts.counts.items()], "_none_"),
        "",
        "## Yield per stage",
        "",
        *_table(
            [
                {"stage": stage, "in": n_in, "out": n_out, "yield": f"{n_out / n_in:.1%}" if n_in else "n/a"}
                for stage, (n_in, n_out) in facts.yields.items()
            ],
            "_none_",
        ),
        "",
        "## Paths surviving each stage, by operation",
        "",
        *_table(facts.survival, "_no paths_"),
        "",
        "## Rejections by rule",
        "",
        *_table(facts.rejections, "_no path was dropped_"),
        "",
        "## Shape mix",
        "",
        *_table([{"shape": k, "paths": p, "conversations": c} for k, (p, c) in sorted(facts.shapes.items())], "_none_"),
        "",
        "## Operation mix (paths)",
        "",
        *_table([{"operation": k, "count": v} for k, v in sorted(facts.operation_mix.items())], "_none_"),
        "",
        "## Distributions",
        "",
    ]
    for name, hist in facts.stats.items():
        lines.append(f"- {name.replace('_', ' ')}: " + ", ".join(f"{k}: {v}" for k, v in hist.items()))
    if facts.plots:
        lines += ["", "## Plots", ""]
        for filename, title in facts.plots:
            lines += ["", f"![{title}]({filename})"]
    lines += ["", "## Examples", ""]
    for ex in facts.examples:
        lines += ["```", *(_render(m) for m in ex["messages"]), "```", ""]
    lines += [
        "## Files",
        "",
        "- `sft.jsonl`, `sft.parquet`: TRL conversational format (`messages`, `tools`), column `split`",
        "- `preference.jsonl`, `preference.parquet`: `prompt` / `chosen` / `rejected`, column `error_type`",
        *(f"- `{filename}`: {title.lower()}" for filename, title in facts.plots),
        f"- `{EVALUATION_PLOT}`: the student's scores by turn kind and category (written by `student_evaluation`)",
    ]
    return "\n".join(lines) + "\n"


def _render(m: dict[str, Any]) -> str:
    if m.get("tool_calls"):
        calls = compact_calls([tc["function"] for tc in m["tool_calls"]], width=80)
        return f"{m['role']}: [calls] {calls}"
    return f"{m['role']}: {(m.get('content') or '')[:200]}"


@dataclass
class ExportOutcome:
    directory: Path
    sft: list[dict[str, Any]]
    preference: list[dict[str, Any]]
    card: str
    #: shape -> (paths of that shape, exported conversations of that shape)
    shapes: dict[str, tuple[int, int]]
    stats: dict[str, Any] = field(default_factory=dict)
    #: the plots written beside the files, by name (`yield_funnel`, `calls_per_turn`, ...)
    plots: dict[str, Plot] = field(default_factory=dict)
    #: path id -> shape, for every stored path
    shape_of: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> dict[str, Path]:
        return export_files(self.directory)


@dataclass
class ExportSources:
    """What the card describes besides the conversations: the paths, the pairs, the counts per
    stage, and the function graph with each function's category."""

    pairs: list[dict[str, Any]]
    path_rows: list[dict[str, Any]]
    counts: PartitionCounts
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    categories: dict[str, str] = field(default_factory=dict)


def export_plots(
    sources: ExportSources, paths: list[SignaturePath], stats: dict[str, Any], exported: int
) -> dict[str, Plot]:
    """The card's plots: the yield funnel from paths to exported conversations, turns per
    conversation and calls per turn of the exports, the shape and operation mix of the paths,
    the function graph and its degree histogram."""
    c = sources.counts.stages
    plots = [
        funnel_plot(
            [
                ("signature paths", c["paths"]),
                ("passed translation", c["paths_with_queries"]),
                ("distilled", c["trajectories"]),
                ("exported (deduplicated)", exported),
            ],
            "Yield funnel: paths to training conversations",
        ),
        histogram_plot(
            "turns_per_conversation",
            "User turns per conversation",
            stats["user_turns_per_conversation"],
            "user turns",
            "conversations",
        ),
        histogram_plot("calls_per_turn", "Calls per user turn", stats["calls_per_turn"], "calls", "turns"),
        mix_plot(operation_mix(paths), dict(Counter(p.shape for p in paths)), len(paths)),
        graph_plot(sources.graph, sources.categories),
        degree_plot(sources.graph),
    ]
    return {p.name: p for p in plots}


def export_partition(
    directory: Path, tool_set: str, assignment: SplitAssignment, sources: ExportSources
) -> ExportOutcome:
    """Write the SFT and preference files (JSONL, and Parquet when not empty), the plots and
    the dataset card that shows them."""
    kept, split_of = assignment.kept, {r["trajectory_id"]: r["split"] for r in assignment.rows}
    sft = [sft_row(t, split_of[t["trajectory_id"]]) for t in kept]
    tools_of = {t["trajectory_id"]: t["tools"] for t in kept}
    pref = [
        preference_row(p, split_of[p["trajectory_id"]], tools=tools_of[p["trajectory_id"]])
        for p in sources.pairs
        if p["trajectory_id"] in split_of
    ]
    for name, rows in (("sft", sft), ("preference", pref)):
        write_jsonl(directory / f"{name}.jsonl", rows)
        if rows:
            write_parquet(directory / f"{name}.parquet", rows)
        else:  # an earlier run's file must not outlive its rows
            (directory / f"{name}.parquet").unlink(missing_ok=True)
    paths = [SignaturePath.from_row(p) for p in sources.path_rows]
    shape_of = {p["path_id"]: p.get("shape") or MULTI_TURN for p in sources.path_rows}
    exported = Counter(shape_of.get(t["path_id"], MULTI_TURN) for t in kept)
    shapes = {shape: (n, exported[shape]) for shape, n in Counter(shape_of.values()).items()}
    stats = conversation_stats(sft)
    plots = export_plots(sources, paths, stats, len(sft))
    for plot in plots.values():
        plot.write(directory)
    counts = sources.counts
    card = dataset_card(
        CardFacts(
            tool_set,
            counts.stages | {"duplicates_removed": assignment.duplicates},
            stage_yields(counts.stages),
            operation_mix(paths),
            stats,
            sft[:2],
            shapes,
            counts.survival,
            counts.rejections,
            [(p.filename, p.title) for p in plots.values()],
        )
    )
    (directory / "dataset_card.md").write_text(card)
    return ExportOutcome(directory, sft, pref, card, shapes, stats, plots, shape_of)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def exported_problems(rows: list[dict[str, Any]], specs: dict[str, FunctionSpec]) -> list[str]:
    """Why exported conversations are unfit to train on: hint text, or a call to a function the
    conversation does not offer or with arguments its schema refuses."""
    problems: list[str] = []
    for row in rows:
        where = row.get("trajectory_id")
        if contains_hint(row["messages"]):
            problems.append(f"{where}: hint text")
        offered = {t["function"]["name"] for t in row.get("tools") or []} | {
            t["function"]["name"] for t in announced_tools(row["messages"])
        }
        for m in row["messages"]:
            for tc in m.get("tool_calls") or []:
                name = tc["function"]["name"]
                spec = specs.get(name)
                if spec is None or name not in offered:
                    problems.append(f"{where}: {name}: not offered in this conversation")
                    continue
                try:
                    jsonschema.validate(json.loads(tc["function"]["arguments"]), spec.parameters)
                except (jsonschema.ValidationError, json.JSONDecodeError) as exc:
                    problems.append(f"{where}: {name}: {getattr(exc, 'message', exc)}")
    return problems
