"""Text a person reads at a glance: funnel lines, percentages, compact calls, fair samples.

Plain Python for the Dagster metadata builders, the report and the dataset card: a preview
should show the part of a row that differs (not a prefix every row shares), cut at a word,
and a sample across the kinds of rows there are (not the first rows, which are often all
of one kind).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: where a shared description prefix may end: after a sentence or a label ("Tool description: ")
_PREFIX_ENDS = (". ", ": ", "; ", "\n")
#: a zero-width space: where a browser may break a long identifier
ZWSP = "\u200b"
_BREAK_AFTER = re.compile(r"([_.(=/,:\]-])")


def percent(part: float, whole: float) -> str:
    """`part / whole` as a whole-number percentage ("92%"); "<1%" rather than a misleading "0%"."""
    if not whole:
        return "n/a"
    share = part / whole
    if 0 < share < 0.01:
        return "<1%"
    return f"{share:.0%}"


def rate(value: float | None) -> str:
    """A 0..1 rate as a percentage with one decimal ("66.7%"), "n/a" when there was nothing to rate."""
    return "n/a" if value is None else f"{value:.1%}"


def funnel(part: int, whole: int, what: str) -> str:
    """One funnel line: `funnel(191, 208, "judged pairs became edges")` ->
    "191 of 208 judged pairs became edges (92%)"."""
    return f"{part} of {whole} {what} ({percent(part, whole)})"


def shorten(text: Any, width: int = 120) -> str:
    """`text` on one line, cut at a word boundary before `width` characters, with "…" when cut."""
    flat = " ".join(str(text).split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1]
    space = cut.rfind(" ")
    if space > width // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


def breakable(text: str, longer_than: int = 16) -> str:
    """`text` with a zero-width space after `_ . ( = / , : ] -` inside words longer than
    `longer_than` characters: a narrow table cell may then wrap `ticket_get_login_status(`
    instead of growing past its column (the Dagster UI clips a metadata table that does)."""
    return " ".join(_BREAK_AFTER.sub(r"\1" + ZWSP, w) if len(w) > longer_than else w for w in text.split(" "))


def shared_prefix(texts: Sequence[str]) -> str:
    """The prefix every text shares, cut back to the end of a sentence or label, so what is left
    starts a sentence: BFCL descriptions all open with "This tool belongs to the Math API, which
    provides ... Tool description: ". Empty for fewer than two texts or no such boundary."""
    if len(texts) < 2:
        return ""
    common = texts[0]
    for text in texts[1:]:
        same = next((i for i, (a, b) in enumerate(zip(common, text)) if a != b), min(len(common), len(text)))
        common = common[:same]
    end = max((common.rfind(mark) + len(mark) for mark in _PREFIX_ENDS if mark in common), default=0)
    return common[:end]


def without_shared_prefix(texts: Sequence[str], groups: Sequence[Hashable] | None = None) -> list[str]:
    """Each text without the prefix shared by its group (by all texts when no groups are given);
    a text that is nothing but the prefix is kept whole."""
    keys: Sequence[Hashable] = groups if groups is not None else [None] * len(texts)
    by_group: dict[Hashable, list[str]] = {}
    for key, text in zip(keys, texts):
        by_group.setdefault(key, []).append(text)
    prefixes = {key: shared_prefix(members) for key, members in by_group.items()}
    out = []
    for key, text in zip(keys, texts):
        prefix = prefixes[key]
        out.append(text[len(prefix) :] if prefix and len(text) > len(prefix) else text)
    return out


def _literal(value: Any, width: int) -> str:
    return shorten(json.dumps(value, ensure_ascii=False), width)


def compact_call(call: dict[str, Any], width: int = 40) -> str:
    """A call as a person writes it: `fn(a=1, b="x")`, each argument cut to `width` characters.
    Takes `{"name", "arguments"}` (arguments a dict or OpenAI's JSON string)."""
    args = call.get("arguments", call.get("parameters")) or {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return f"{call.get('name')}({shorten(args, width)})"
    if not isinstance(args, dict):
        return f"{call.get('name')}({_literal(args, width)})"
    return f"{call.get('name')}(" + ", ".join(f"{k}={_literal(v, width)}" for k, v in args.items()) + ")"


def compact_calls(calls: Iterable[dict[str, Any]] | None, width: int = 40) -> str:
    """Several calls on one line, `;`-separated; "—" for none."""
    text = "; ".join(compact_call(c, width) for c in calls or [])
    return text or "—"


def message_calls(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls of OpenAI-shaped assistant messages, as `{"name", "arguments"}`."""
    return [tc["function"] for m in messages if m.get("role") == "assistant" for tc in m.get("tool_calls") or []]


def spread(
    rows: Sequence[T], key: Callable[[T], Hashable], limit: int = 12, within: Callable[[T], Hashable] | None = None
) -> list[T]:
    """A sample across the kinds of rows: take one row of each kind in turn (kinds in the order
    they first appear) until `limit` rows are taken. Within a kind, rows keep their order, or
    are spread across `within` first (e.g. edges of one relation across their source functions)."""
    if within is not None:
        rows = spread(rows, within, limit=len(rows))
    groups: dict[Hashable, list[T]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    queues = list(groups.values())
    out: list[T] = []
    depth = 0
    while len(out) < limit and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][: limit - len(out)]
        depth += 1
    return out
