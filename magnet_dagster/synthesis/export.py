"""Exports a trainer loads directly, and the dataset card.

SFT rows are TRL's conversational tool-calling format (`messages` with `tool_calls` and `tool`
messages, plus `tools`); preference rows are `prompt` / `chosen` / `rejected` at turn level,
with the `tools` the conversation offered. Messages follow the Hugging Face chat-template
convention: a call's `function.arguments` is a JSON object (a dict), not OpenAI's JSON string,
so templates that write it with `tojson` (Qwen2.5, Llama 3.x) encode it once.

Fields whose shape varies from row to row (the tool schemas, each call's arguments) are kept
as JSON in Parquet so every row has one schema: the `tools` column and the nested
`tool_calls[].function.arguments` field are Arrow's JSON extension type (Parquet's JSON
logical type), which `datasets` decodes into the list of schemas that
`apply_chat_template(tools=...)` takes and into one dict of arguments per call, while pandas
and DuckDB read JSON text. In JSONL they are plain JSON. `export_features()` gives the
`datasets.Features` that load either file with both fields as `Json()`: without it,
`datasets` infers one struct for all calls' arguments (`Dataset.from_list` fills every call
with the other functions' argument names as nulls; `load_dataset("json")` refuses files whose
first chunk has one argument shape). `Json()` decodes with pandas' ujson, which reads a few
decimals one unit in the last place off (0.6 as 0.6000000000000001) and re-encodes JSONL objects
with 10 decimals; the files hold exact JSON (Python's `json`), so a trainer that must render the
values exactly reads the JSONL with `json` and bypasses Arrow. The card says all this and how
to load the files. The card's plots (PNG) are written beside the files, and the card shows them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


def call_arguments(arguments: Any) -> Any:
    """A call's arguments as a JSON value: OpenAI's JSON string decoded (blank: `{}`), an object
    kept as it is; text that is not JSON is returned unchanged (`exported_problems` names it)."""
    if not isinstance(arguments, str):
        return {} if arguments is None else arguments
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments


def export_message(m: dict[str, Any]) -> dict[str, Any]:
    """A message as the exports carry it: each call's `function.arguments` a JSON object."""
    if not m.get("tool_calls"):
        return m
    calls = [
        {**tc, "function": {**tc["function"], "arguments": call_arguments(tc["function"].get("arguments"))}}
        for tc in m["tool_calls"]
    ]
    return {**m, "tool_calls": calls}


def sft_row(trajectory: dict[str, Any], split: str) -> dict[str, Any]:
    return {
        "messages": [export_message(m) for m in trajectory["messages"]],
        "tools": trajectory["tools"],
        "split": split,
        "trajectory_id": trajectory["trajectory_id"],
        "path_id": trajectory["path_id"],
    }


def preference_row(pair: dict[str, Any], split: str, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A DPO row; `tools` (the trajectory's) is what the prompt is rendered with, as in the SFT row."""
    return {
        "prompt": [export_message(m) for m in pair["prompt"]],
        "chosen": [export_message(m) for m in pair["chosen"]],
        "rejected": [export_message(m) for m in pair["rejected"]],
        "tools": tools if tools is not None else pair.get("tools") or [],
        "error_type": pair["error_type"],
        "split": split,
        "pair_id": pair["pair_id"],
        "trajectory_id": pair["trajectory_id"],
    }


def _message_type(arguments: pa.DataType) -> pa.DataType:
    function = pa.struct([("name", pa.string()), ("arguments", arguments)])
    call = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", function)])
    return pa.list_(
        pa.struct(
            [
                ("role", pa.string()),
                ("content", pa.string()),
                ("tool_calls", pa.list_(call)),
                ("tool_call_id", pa.string()),
                ("name", pa.string()),
            ]
        )
    )


#: the Parquet type of a conversation column: one schema for every row and every file, the
#: call arguments as JSON (built from JSON text, the storage type, then cast)
_MESSAGES_STORAGE, MESSAGES_TYPE = _message_type(pa.string()), _message_type(pa.json_())
_CONVERSATION_COLUMNS = ("messages", "prompt", "chosen", "rejected")


def _message_for_parquet(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": m["role"],
        "content": m.get("content"),
        "tool_calls": [
            {
                "id": tc["id"],
                "type": "function",
                "function": {"name": tc["function"]["name"], "arguments": json.dumps(tc["function"]["arguments"])},
            }
            for tc in export_message(m).get("tool_calls") or []
        ]
        or None,
        "tool_call_id": m.get("tool_call_id"),
        "name": m.get("name"),
    }


def _parquet_column(key: str, values: list[Any]) -> pa.Array:
    if key in _CONVERSATION_COLUMNS:
        rows = [[_message_for_parquet(m) for m in v] for v in values]
        return pa.array(rows, type=_MESSAGES_STORAGE).cast(MESSAGES_TYPE)
    if key == "tools":
        return pa.array([json.dumps(v) for v in values], type=pa.string()).cast(pa.json_())
    return pa.array(values)


#: how to load the exports with `datasets`, as the dataset card shows it (a test runs this text
#: and compares it with `export_features`)
LOAD_SNIPPET = """\
from datasets import Features, Json, List, Value, load_dataset

message = {"role": Value("string"), "content": Value("string"),
           "tool_calls": List({"id": Value("string"), "type": Value("string"),
                               "function": {"name": Value("string"), "arguments": Json()}}),
           "tool_call_id": Value("string"), "name": Value("string")}
sft = Features({"messages": List(message), "tools": Json(), "split": Value("string"),
                "trajectory_id": Value("string"), "path_id": Value("string")})
preference = Features({"prompt": List(message), "chosen": List(message), "rejected": List(message),
                       "tools": Json(), "error_type": Value("string"), "split": Value("string"),
                       "pair_id": Value("string"), "trajectory_id": Value("string")})

train = load_dataset("json", data_files="sft.jsonl", features=sft, split="train")
# or: load_dataset("parquet", data_files="sft.parquet", features=sft, split="train")
pairs = load_dataset("json", data_files="preference.jsonl", features=preference, split="train")
"""


def export_features(kind: Literal["sft", "preference"]) -> Any:
    """The `datasets.Features` of the `"sft"` or `"preference"` export, for
    `load_dataset("json" | "parquet", ..., features=...)` or `Dataset.from_list(rows, features=...)`:
    `tools` and every call's `arguments` as `Json()`, so each row gets back exactly the dicts
    written. Without them `datasets` infers one struct for all calls' arguments. Needs the
    `datasets` package (the `test` and `train` extras)."""
    from datasets import Features, Json, List, Value

    text = Value("string")
    call = {"id": text, "type": text, "function": {"name": text, "arguments": Json()}}
    message = {"role": text, "content": text, "tool_calls": List(call), "tool_call_id": text, "name": text}
    if kind == "sft":
        columns = {"messages": List(message), "tools": Json(), "split": text, "trajectory_id": text, "path_id": text}
    elif kind == "preference":
        conversation = {key: List(message) for key in ("prompt", "chosen", "rejected")}
        labels = {key: text for key in ("error_type", "split", "pair_id", "trajectory_id")}
        columns = {**conversation, "tools": Json(), **labels}
    else:
        raise ValueError(f"no export named {kind!r}: 'sft' or 'preference'")
    return Features(columns)


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
    columns = list(rows[0]) if rows else []
    table = pa.table({key: _parquet_column(key, [r.get(key) for r in rows]) for key in columns})
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
                    args = _scalars(call_arguments(tc["function"]["arguments"]))
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
        "",
        "## Format and loading",
        "",
        "Messages follow the Hugging Face chat-template convention: an assistant call is "
        '`{"id", "type": "function", "function": {"name", "arguments"}}` with `arguments` a JSON '
        "**object**, not OpenAI's JSON string, so templates that write it with `tojson` (Qwen2.5, "
        "Llama 3.x) encode it once; `tools` is the list of OpenAI-style function schemas for "
        "`apply_chat_template(messages, tools=tools)`. Tool results are `tool` messages whose "
        "`content` is JSON text.",
        "",
        "Each function has its own argument names and types, so in Parquet the `tools` column and "
        "each call's `arguments` are Arrow's JSON type (Parquet's JSON logical type): one schema for "
        "all rows; `datasets` decodes them to lists and dicts, pandas and DuckDB read JSON text. "
        "Load with these features (`magnet_dagster.synthesis.export.export_features` gives the same): "
        "without them `datasets` infers one struct for all calls' arguments, filling each call with "
        "the other functions' argument names as nulls (`Dataset.from_list`) or failing on files whose "
        "first rows all share one argument shape (`load_dataset`, e.g. several tool sets at once).",
        "",
        "```python",
        *LOAD_SNIPPET.rstrip("\n").splitlines(),
        "```",
        "",
        "`Json()` decodes with pandas' ujson, which reads a few decimals one unit in the last place off "
        "(`0.6` as `0.6000000000000001`) and re-encodes JSONL objects with 10 decimals. The files hold "
        "exact JSON: to render every value exactly as written, read the JSONL with Python's `json` and "
        "hand the rows to the trainer without an Arrow round trip.",
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
                arguments = tc["function"].get("arguments")
                if isinstance(arguments, str):  # the exports carry objects; a string is OpenAI's form
                    problems.append(f"{where}: {name}: arguments are a string, not a JSON object")
                    continue
                try:
                    jsonschema.validate(arguments, spec.parameters)
                except jsonschema.ValidationError as exc:
                    problems.append(f"{where}: {name}: {exc.message}")
    return problems
