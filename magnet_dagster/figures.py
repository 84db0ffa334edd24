"""Small PNG plots of what each stage made, for the Dagster UI and the dataset card.

Pure functions, data in and a `Plot` (PNG bytes) out. They use matplotlib's object API on
the Agg canvas, so no global backend is chosen and nothing needs a display; networkx lays
out and draws the function graph. The UI shows a plot from Markdown metadata as a base64
`data:` image (`Plot.markdown`); the export writes the same bytes beside the files
(`Plot.write`), where the dataset card links them.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import networkx as nx
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

#: small enough to embed in metadata (tens of kB each), large enough to read
DPI = 90
BAR = "#4C72B0"
SECOND = "#DD8452"
#: edge colour and line style per relation (prerequisite edges pass no data: dashed)
RELATION_STYLE: dict[str, tuple[str, Literal["solid", "dashed"]]] = {
    "full": ("#2F4B7C", "solid"),
    "partial": ("#2CA02C", "solid"),
    "prerequisite": ("#E15759", "dashed"),
}
PALETTE = ("#4E79A7", "#F28E2B", "#76B7B2", "#EDC948", "#B07AA1", "#FF9DA7", "#9C755F", "#BAB0AC")


@dataclass(frozen=True)
class Plot:
    """One rendered plot: `name` is its file stem, `title` its alt text and caption."""

    name: str
    title: str
    png: bytes

    @property
    def filename(self) -> str:
        return f"{self.name}.png"

    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")

    def markdown(self) -> str:
        """An inline image the Dagster UI renders (its Markdown allows `data:` image sources)."""
        return f"![{self.title}](data:image/png;base64,{self.base64()})"

    def write(self, directory: Path) -> Path:
        """Write `<directory>/<name>.png` (atomically: a reader never sees half a file)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.filename
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(self.png)
        tmp.replace(path)
        return path


def markdown(plots: Sequence[Plot]) -> str:
    """Several plots in one Markdown entry (each carries its title inside the image)."""
    return "\n\n".join(p.markdown() for p in plots)


def _figure(width: float, height: float, panels: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure of `panels` axes stacked top to bottom: the UI shows a plot in a dialog about
    460 px wide, so plots grow down, not across."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(panels, 1, i + 1) for i in range(panels)]
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
    return fig, axes


def _png(fig: Figure) -> bytes:
    """The figure as a PNG of at most 96 colours: a third of the size of the full-colour one,
    which matters for a plot stored in every materialization's metadata."""
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=DPI, bbox_inches="tight", facecolor="white", metadata={"Software": None})
    raw.seek(0)
    out = io.BytesIO()
    Image.open(raw).convert("RGB").quantize(colors=96).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _empty(ax: Axes, text: str = "nothing to show") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color="grey", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _hbars(ax: Axes, counts: Mapping[str, float], title: str, xlabel: str, percent_of: float | None = None) -> None:
    """Horizontal bars, largest on top, each labelled with its value (and share of `percent_of`)."""
    ax.set_title(title, fontsize=9)
    if not counts:
        _empty(ax)
        return
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:12][::-1]
    labels, values = [str(k) for k, _ in items], [v for _, v in items]
    ax.barh(labels, values, color=BAR)
    top = max(values) or 1
    for y, v in enumerate(values):
        share = f" ({v / percent_of:.0%})" if percent_of else ""
        ax.text(v + top * 0.02, y, f"{v:g}{share}", va="center", fontsize=7)
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel(xlabel, fontsize=8)


def histogram_plot(name: str, title: str, hist: Mapping[Any, int], xlabel: str, ylabel: str = "count") -> Plot:
    """A histogram already counted (`{value: count}`), as vertical bars labelled with the count."""
    fig, (ax,) = _figure(4.2, 2.4)
    ax.set_title(title, fontsize=9)
    if not hist:
        _empty(ax)
    else:
        keys = sorted(hist, key=lambda k: (not isinstance(k, int | float), k))
        labels, values = [str(k) for k in keys], [hist[k] for k in keys]
        bars = ax.bar(labels, values, color=BAR)
        ax.bar_label(bars, fontsize=7)
        ax.set_ylim(0, max(values) * 1.2 or 1)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    return Plot(name, title, _png(fig))


def mix_plot(operations: Mapping[str, int], shapes: Mapping[str, int], paths: int) -> Plot:
    """The shape mix above the node-operation mix of the signature paths, each bar with its
    share of all paths (one path may carry several operations)."""
    title = "Shape and operation mix"
    rows = min(len(shapes), 12) + min(len(operations), 12)
    fig, (top, bottom) = _figure(4.8, 1.6 + 0.28 * max(rows, 2), panels=2)
    _hbars(top, shapes, "paths by shape", "paths", percent_of=paths)
    _hbars(bottom, operations, "paths by node operation", "paths", percent_of=paths)
    fig.subplots_adjust(hspace=0.7)
    return Plot("shape_operation_mix", title, _png(fig))


def funnel_plot(steps: Sequence[tuple[str, int]], title: str = "Yield funnel") -> Plot:
    """How many items reach each step, top to bottom, each bar with its share of the first step."""
    fig, (ax,) = _figure(4.8, 0.5 + 0.36 * max(len(steps), 1))
    ax.set_title(title, fontsize=9)
    if not steps or not steps[0][1]:
        _empty(ax)
    else:
        first = steps[0][1]
        labels, values = [s for s, _ in steps][::-1], [n for _, n in steps][::-1]
        ax.barh(labels, values, color=BAR)
        for y, v in enumerate(values):
            ax.text(v + first * 0.02, y, f"{v} ({v / first:.0%})", va="center", fontsize=7)
        ax.set_xlim(0, first * 1.35)
        ax.set_xlabel("count", fontsize=8)
    return Plot("yield_funnel", title, _png(fig))


def _graph_view(graph: nx.DiGraph, max_nodes: int) -> tuple[nx.DiGraph, str]:
    if graph.number_of_nodes() <= max_nodes:
        return graph, f"{graph.number_of_nodes()} functions, {graph.number_of_edges()} edges"
    degree = dict(graph.degree())
    keep = sorted(graph, key=lambda n: (-degree[n], n))[:max_nodes]
    sub = graph.subgraph(keep)
    return sub, (
        f"the {max_nodes} best-connected of {graph.number_of_nodes()} functions "
        f"({sub.number_of_edges()} of {graph.number_of_edges()} edges)"
    )


def _component_layout(view: nx.DiGraph) -> dict[Any, tuple[float, float]]:
    """Each weak component laid out on its own (dense ones on a circle, where every label stays
    readable; sparse ones by springs), lone functions together on one circle, and the pieces
    packed in rows, largest first: one spring layout of the whole graph throws components far
    apart and crowds each one."""
    comps = sorted((c for c in nx.weakly_connected_components(view) if len(c) > 1), key=lambda c: (-len(c), min(c)))
    lone = sorted(n for n in view if view.degree(n) == 0)
    pieces = [sorted(c) for c in comps] + ([lone] if lone else [])
    radius = [max(0.6, 0.45 * len(p) ** 0.5) for p in pieces]
    row_width = max(max(2 * r for r in radius), 1.4 * sum((2 * r) ** 2 for r in radius) ** 0.5)
    pos: dict[Any, tuple[float, float]] = {}
    x = y = row_height = 0.0
    for nodes, r in zip(pieces, radius):
        if x > 0 and x + 2 * r > row_width:
            x, y, row_height = 0.0, y - row_height - 0.5, 0.0
        sub = view.subgraph(nodes)
        if len(nodes) == 1:
            local = {nodes[0]: (0.0, 0.0)}
        elif nodes is lone or sub.number_of_edges() >= 1.5 * len(nodes):
            local = {n: (float(a), float(b)) for n, (a, b) in nx.circular_layout(nodes, scale=r).items()}
        else:
            local = {n: (float(a), float(b)) for n, (a, b) in nx.spring_layout(sub, seed=7, scale=r).items()}
        pos |= {n: (x + r + a, y - r + b) for n, (a, b) in local.items()}
        x += 2 * r + 0.5
        row_height = max(row_height, 2 * r)
    return pos


def graph_plot(graph: nx.DiGraph, groups: Mapping[str, str] | None = None, max_nodes: int = 40) -> Plot:
    """The function graph drawn small: nodes coloured by category (`groups`: name -> category),
    edges styled by relation. Past `max_nodes` only the best-connected functions are drawn,
    which the caption says."""
    view, caption = _graph_view(graph, max_nodes)
    fig, (ax,) = _figure(6.2, 5.4)
    ax.set_axis_off()
    title = f"Function graph: {caption}"
    ax.set_title(title, fontsize=9)
    if view.number_of_nodes() == 0:
        _empty(ax, "no functions")
        return Plot("function_graph", title, _png(fig))
    groups = groups or {}
    categories = [c for c, _ in Counter(groups.get(n, "-") for n in view).most_common()]
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(categories)}
    pos = _component_layout(view)
    for relation, (edge_colour, style) in RELATION_STYLE.items():
        edges = [(s, t) for s, t, r in view.edges(data="relation") if r == relation]
        if edges:
            nx.draw_networkx_edges(
                view, pos, edgelist=edges, ax=ax, edge_color=edge_colour, style=style, alpha=0.35,
                arrowsize=6, width=0.6, node_size=90, connectionstyle="arc3,rad=0.1",
            )  # fmt: skip
    nx.draw_networkx_nodes(
        view, pos, ax=ax, node_size=90, node_color=[colour[groups.get(n, "-")] for n in view], linewidths=0
    )
    labels = nx.draw_networkx_labels(view, pos, ax=ax, font_size=6.5, verticalalignment="bottom")
    for text in labels.values():
        text.set_bbox({"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.5})
    handles = [
        Line2D([], [], color=c, linestyle=s, linewidth=2, label=r)
        for r, (c, s) in RELATION_STYLE.items()
        if any(rel == r for _, _, rel in view.edges(data="relation"))
    ]
    if len(categories) > 1:
        handles += [
            Line2D([], [], marker="o", linestyle="", color=colour[c], label=c) for c in categories[: len(PALETTE)]
        ]
    if handles:
        ax.legend(handles=handles, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False, ncols=6)
    ax.margins(0.08)
    return Plot("function_graph", title, _png(fig))


def degree_plot(graph: nx.DiGraph) -> Plot:
    """How many functions have each out-degree and in-degree: where walks can go, and where they end."""
    title = "Degree histogram"
    out_hist = Counter(d for _, d in graph.out_degree())
    in_hist = Counter(d for _, d in graph.in_degree())
    fig, (ax,) = _figure(4.6, 2.4)
    ax.set_title(title, fontsize=9)
    seen = set(out_hist) | set(in_hist)
    degrees = list(range(max(seen) + 1)) if seen and max(seen) <= 40 else sorted(seen)
    if not degrees:
        _empty(ax, "no functions")
    else:
        xs = range(len(degrees))
        ax.bar([x - 0.2 for x in xs], [out_hist[d] for d in degrees], width=0.4, color=BAR, label="out-degree")
        ax.bar([x + 0.2 for x in xs], [in_hist[d] for d in degrees], width=0.4, color=SECOND, label="in-degree")
        ax.set_xticks(list(xs), [str(d) for d in degrees])
        ax.set_xlabel("degree (edges)", fontsize=8)
        ax.set_ylabel("functions", fontsize=8)
        ax.legend(fontsize=7, frameon=False)
    return Plot("degree_histogram", title, _png(fig))


def scores_plot(summary: Mapping[str, Mapping[str, Any]], max_groups: int = 10) -> Plot:
    """Turn accuracy by turn kind and by category, one bar per evaluation mode (percent).
    `summary` is `evaluation.scoring.summarise`'s: mode -> {"by_kind": {k: {"turns", "accuracy"}}, ...}."""
    title = "Evaluation scores"
    modes = sorted(summary, key=lambda m: (m != "teacher_forced", m))
    panels = [("by_kind", "turn accuracy by turn kind"), ("by_category", "turn accuracy by category")]
    fig, axes = _figure(4.8, 5.2, panels=2)
    for ax, (group, panel_title) in zip(axes, panels):
        ax.set_title(panel_title, fontsize=9)
        turns: Counter[str] = Counter()
        for mode in modes:
            for key, s in (summary[mode].get(group) or {}).items():
                turns[key] += s.get("turns") or 0
        keys = [k for k, _ in turns.most_common(max_groups)][::-1]
        if not keys or not modes:
            _empty(ax)
            continue
        height = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            scores = summary[mode].get(group) or {}
            cells = [scores.get(k) or {} for k in keys]
            values = [100 * (c.get("accuracy") or 0.0) for c in cells]
            ys = [y - 0.4 + height * (i + 0.5) for y in range(len(keys))]
            bars = ax.barh(ys, values, height=height, color=PALETTE[i % len(PALETTE)], label=mode.replace("_", " "))
            labels = [f"{v:.0f}% of {c['turns']}" if c.get("turns") else "no turns" for v, c in zip(values, cells)]
            ax.bar_label(bars, labels=labels, fontsize=6, padding=2)
        ax.set_yticks(range(len(keys)), keys)
        ax.set_xlim(0, 125)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.set_xlabel("% of turns correct", fontsize=8)
    drawn = [ax for ax in axes if ax.patches]
    if drawn:
        handles, labels = drawn[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncols=2)
    fig.subplots_adjust(hspace=0.5)
    return Plot("evaluation_scores", title, _png(fig))


def loss_plot(curves: Mapping[str, Sequence[tuple[int, float]]]) -> Plot:
    """Training loss per step, one panel per phase (SFT, then DPO): `{phase: [(step, loss), ...]}`."""
    title = "Training loss"
    phases = list(curves) or ["training"]
    fig, axes = _figure(4.8, 2.2 * len(phases), panels=len(phases))
    for i, (ax, phase) in enumerate(zip(axes, phases)):
        points = curves.get(phase) or []
        ax.set_title(f"{phase}: loss per step", fontsize=9)
        if not points:
            _empty(ax, "no steps")
            continue
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker="o", markersize=3, color=PALETTE[i % len(PALETTE)])
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
    fig.subplots_adjust(hspace=0.6)
    return Plot("training_loss", title, _png(fig))
