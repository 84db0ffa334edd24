"""`previews`: funnel lines, percentages, word-boundary cuts, shared prefixes, compact calls, fair samples."""

from magnet_dagster.previews import (
    ZWSP,
    breakable,
    compact_call,
    compact_calls,
    funnel,
    percent,
    rate,
    shared_prefix,
    shorten,
    spread,
    without_shared_prefix,
)

BFCL = "This tool belongs to the Math API, which provides various mathematical operations. Tool description: "


def test_funnel_line_reads_as_counts_and_a_whole_percentage():
    assert funnel(191, 208, "judged pairs became edges") == "191 of 208 judged pairs became edges (92%)"
    assert funnel(0, 0, "paths kept") == "0 of 0 paths kept (n/a)"
    assert percent(1, 400) == "<1%" and percent(0, 5) == "0%"
    assert rate(0.6667) == "66.7%" and rate(None) == "n/a"


def test_shorten_cuts_at_a_word_and_says_so():
    text = "Calculate the absolute value of a number and then round it to the given precision please"
    cut = shorten(text, 40)
    assert len(cut) <= 40 and cut.endswith("…")
    assert text.startswith(cut[:-1]) and text[len(cut) - 1] == " ", "never mid-word"
    assert shorten("short\n text", 40) == "short text"


def test_a_prefix_every_description_shares_is_dropped_up_to_a_sentence_end():
    texts = [BFCL + "Add two numbers.", BFCL + "Multiply two numbers."]
    assert shared_prefix(texts) == BFCL
    assert without_shared_prefix(texts) == ["Add two numbers.", "Multiply two numbers."]
    assert without_shared_prefix(["Get weather", "Get forecast"]) == ["Get weather", "Get forecast"]


def test_prefixes_are_shared_per_group():
    ticket = "This tool belongs to the ticketing system. Tool description: "
    texts = [BFCL + "Add.", BFCL + "Divide.", ticket + "Close a ticket.", ticket + "Open a ticket."]
    groups = ["math", "math", "ticket", "ticket"]
    assert without_shared_prefix(texts, groups) == ["Add.", "Divide.", "Close a ticket.", "Open a ticket."]
    assert without_shared_prefix([BFCL + "Only one."], ["math"]) == [BFCL + "Only one."]


def test_calls_read_as_a_person_writes_them():
    assert compact_call({"name": "add", "arguments": {"a": 1, "b": "x"}}) == 'add(a=1, b="x")'
    assert compact_call({"name": "f", "arguments": '{"n": [1.0, 2]}'}) == "f(n=[1.0, 2])"
    assert compact_calls([]) == "—"
    long = compact_call({"name": "f", "arguments": {"text": "word " * 40}}, width=20)
    assert len(long) < 40 and long.endswith("…)")


def test_spread_samples_every_kind_before_repeating_one():
    rows = [("a", i) for i in range(10)] + [("b", 0), ("c", 0)]
    sample = spread(rows, key=lambda r: r[0], limit=4)
    assert [r[0] for r in sample] == ["a", "b", "c", "a"]
    assert spread(rows, key=lambda r: r[0], limit=100) == [*rows[:1], ("b", 0), ("c", 0), *rows[1:10]]


def test_long_identifiers_get_break_opportunities_and_short_words_none():
    text = breakable("turn 0: ticket_get_login_status(a=1) ok")
    assert text.replace(ZWSP, "") == "turn 0: ticket_get_login_status(a=1) ok"
    assert f"ticket_{ZWSP}get_{ZWSP}login_{ZWSP}status(" in text
    assert breakable("add(a=1)") == "add(a=1)"


def test_spread_within_a_kind_spreads_across_a_second_key():
    rows = [("full", "a", 1), ("full", "a", 2), ("full", "b", 1), ("none", "a", 3)]
    sample = spread(rows, key=lambda r: r[0], limit=3, within=lambda r: r[1])
    assert sample == [("full", "a", 1), ("none", "a", 3), ("full", "b", 1)]
