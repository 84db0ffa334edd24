"""`figures`: every plot is a small PNG, the graph stays drawable past its node limit."""

import base64

import networkx as nx

from magnet_dagster.figures import (
    Plot,
    degree_plot,
    funnel_plot,
    graph_plot,
    histogram_plot,
    markdown,
    mix_plot,
    scores_plot,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _graph(n: int) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(f"f{i}" for i in range(n))
    for i in range(n - 1):
        g.add_edge(f"f{i}", f"f{i + 1}", relation=("full", "partial", "prerequisite")[i % 3])
    return g


def test_every_plot_is_a_small_png():
    plots = [
        graph_plot(_graph(12), {f"f{i}": "even" if i % 2 else "odd" for i in range(12)}),
        degree_plot(_graph(12)),
        mix_plot({"merge": 3, "insert_short": 1}, {"multi_turn": 4, "single": 2}, 6),
        histogram_plot("turns", "Turns", {1: 3, 2: 5}, "turns"),
        funnel_plot([("paths", 10), ("kept", 4)]),
        scores_plot({"teacher_forced": {"by_kind": {"call": {"turns": 4, "accuracy": 0.5}}, "by_category": {}}}),
    ]
    for plot in plots:
        assert plot.png.startswith(PNG) and len(plot.png) < 150_000, plot.name


def test_empty_inputs_still_draw():
    for plot in (graph_plot(nx.DiGraph()), degree_plot(nx.DiGraph()), funnel_plot([]), scores_plot({}),
                 histogram_plot("h", "H", {}, "x")):
        assert plot.png.startswith(PNG)


def test_a_large_graph_draws_its_best_connected_functions_and_says_so():
    plot = graph_plot(_graph(300), max_nodes=40)
    assert plot.png.startswith(PNG)
    assert "the 40 best-connected of 300 functions" in plot.title
    assert graph_plot(_graph(5)).title == "Function graph: 5 functions, 4 edges"


def test_markdown_embeds_base64_png_and_write_puts_it_beside_the_exports(tmp_path):
    plot = Plot("p", "A plot", funnel_plot([("a", 1)]).png)
    text = markdown([plot])
    assert "![A plot](data:image/png;base64," in text
    assert base64.b64decode(text.split("base64,")[1].rstrip(")")) == plot.png
    path = plot.write(tmp_path / "exports")
    assert path == tmp_path / "exports" / "p.png" and path.read_bytes() == plot.png
    assert not list((tmp_path / "exports").glob("*.tmp"))
