"""Signature paths: random walks over the function graph, then Merge, Insert and Split.

Every function here is pure: randomness enters as an explicit `random.Random`, and the
nested-call judge's verdicts come in as a set of (source, target) pairs, so a path is
reproducible from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import networkx as nx

MAX_FUNCTIONS_PER_TURN = 3
CALL, MISS_FUNC, MISS_PARAMS, IRRELEVANT = "call", "miss_func", "miss_params", "irrelevant"
#: the paper's data mix: multi-turn paths plus single-turn examples of four shapes
MULTI_TURN, SINGLE, PARALLEL, MULTIPLE, IRRELEVANCE = "multi_turn", "single", "parallel", "multiple", "irrelevance"
SHAPES = (MULTI_TURN, SINGLE, PARALLEL, MULTIPLE, IRRELEVANCE)


@dataclass(frozen=True)
class Turn:
    """One user turn: the functions its reference calls use.

    `kind` is `call`, or `miss_func` / `miss_params` for the empty turns Split inserts;
    those name in `target` the functions of the turn they stand before. An `irrelevant`
    turn asks for `target`, which the assistant is never offered. `nested` lists
    (source, inserted) pairs whose inserted call takes its arguments from the source's output.
    A `miss_params` turn names in `missing` the required parameter its query leaves out (one
    that nothing earlier in the conversation could supply); the next turn's user gives it.
    """

    functions: tuple[str, ...]
    kind: str = CALL
    target: tuple[str, ...] = ()
    nested: tuple[tuple[str, str], ...] = ()
    operations: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Turn:
        return cls(
            functions=tuple(d["functions"]),
            kind=d.get("kind", CALL),
            target=tuple(d.get("target", ())),
            nested=tuple(tuple(p) for p in d.get("nested", ())),
            operations=tuple(d.get("operations", ())),
            missing=tuple(d.get("missing", ())),
        )


@dataclass(frozen=True)
class SignaturePath:
    walk: tuple[str, ...]
    turns: tuple[Turn, ...]
    operations: tuple[str, ...] = field(default=())
    #: `multi_turn` (a walk), or a single-turn example: `single` (one call, only its function
    #: offered), `parallel` (one function called several times), `multiple` (one call among
    #: several offered functions), `irrelevance` (no offered function fits: no call)
    shape: str = MULTI_TURN

    @property
    def functions(self) -> list[str]:
        return [f for t in self.turns for f in t.functions]

    def as_row(
        self,
        tool_set: str,
        run_id: str,
        path_id: str,
        function_ids: dict[str, str],
        edge_ids: list[str],
        llm_call_ids: list[str],
    ) -> dict[str, Any]:
        """The `paths` row: the walk as function ids, the turns as stored JSON."""
        return {
            "path_id": path_id,
            "tool_set": tool_set,
            "run_id": run_id,
            "walk": [function_ids[f] for f in self.walk],
            "edge_ids": edge_ids,
            "turns": [t.as_dict() for t in self.turns],
            "operations": list(self.operations),
            "shape": self.shape,
            "llm_call_ids": llm_call_ids,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SignaturePath:
        """A stored path back (its walk stays as the stored function ids)."""
        return cls(
            walk=tuple(row["walk"]),
            turns=tuple(Turn.from_dict(t) for t in row["turns"]),
            operations=tuple(row["operations"]),
            shape=row.get("shape") or MULTI_TURN,
        )


def random_walk(graph: nx.DiGraph, start: str, steps: int, rng: random.Random) -> list[str]:
    """Up to `steps` functions along edges from `start`, no node twice, stopping at dead ends."""
    walk = [start]
    while len(walk) < steps:
        choices = sorted(n for n in graph.successors(walk[-1]) if n not in walk)
        if not choices:
            break
        walk.append(rng.choice(choices))
    return walk


def initial_path(walk: list[str]) -> SignaturePath:
    return SignaturePath(walk=tuple(walk), turns=tuple(Turn((f,)) for f in walk))


def merge(path: SignaturePath, p: float, rng: random.Random) -> SignaturePath:
    """With probability `p`, fold a turn into the one before it (several intents, one query)."""
    turns: list[Turn] = []
    ops = list(path.operations)
    for turn in path.turns:
        prev = turns[-1] if turns else None
        if (
            prev is not None
            and prev.kind == CALL
            and turn.kind == CALL
            and len(prev.functions) + len(turn.functions) <= MAX_FUNCTIONS_PER_TURN
            and rng.random() < p
        ):
            turns[-1] = replace(
                prev,
                functions=prev.functions + turn.functions,
                nested=prev.nested + turn.nested,
                operations=prev.operations + ("merge",),
            )
            ops.append("merge")
        else:
            turns.append(turn)
    return replace(path, turns=tuple(turns), operations=tuple(ops))


def nested_index(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Judged nested pairs as source -> sorted targets, so Insert looks up, never scans."""
    index: dict[str, list[str]] = {}
    for source, target in pairs:
        index.setdefault(source, []).append(target)
    return {s: sorted(set(t)) for s, t in index.items()}


def insert(path: SignaturePath, nested: dict[str, list[str]], p: float, rng: random.Random) -> SignaturePath:
    """Add a nested call after a turn's last function, judged nested by the teacher.

    Same turn (short dependency) or as its own turn after a random later turn (long
    dependency); the inserted call must take its arguments from the earlier output.
    `nested` maps a function to the targets the judge found nested (see `nested_index`).
    """
    used = set(path.functions)
    turns = list(path.turns)
    ops = list(path.operations)
    i = 0
    while i < len(turns):
        turn = turns[i]
        if turn.kind != CALL or rng.random() >= p:
            i += 1
            continue
        last = turn.functions[-1]
        options = [t for t in nested.get(last, ()) if t not in used]
        if not options:
            i += 1
            continue
        added = rng.choice(options)
        used.add(added)
        later = [j for j in range(i + 1, len(turns)) if turns[j].kind == CALL]
        if len(turn.functions) < MAX_FUNCTIONS_PER_TURN and (not later or rng.random() < 0.5):
            turns[i] = replace(
                turn,
                functions=turn.functions + (added,),
                nested=turn.nested + ((last, added),),
                operations=turn.operations + ("insert_short",),
            )
            ops.append("insert_short")
        elif later:
            j = rng.choice(later)
            turns.insert(j + 1, Turn((added,), nested=((last, added),), operations=("insert_long",)))
            ops.append("insert_long")
        i += 1
    return replace(path, turns=tuple(turns), operations=tuple(ops))


def inferable_parameters(
    function: str,
    earlier: Iterable[str],
    mappings: Mapping[tuple[str, str], Mapping[str, str]],
    returns_fields: Mapping[str, Iterable[str]],
) -> set[str]:
    """Parameters of `function` that earlier outputs can supply: those an edge mapping from an
    `earlier` function feeds, and those named like a top-level field an earlier function returns."""
    known: set[str] = set()
    for source in earlier:
        known.update(mappings.get((source, function), {}))
        known.update(returns_fields.get(source, ()))
    return known


def split(
    path: SignaturePath,
    p: float,
    rng: random.Random,
    required: Mapping[str, Sequence[str]],
    *,
    mappings: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
    returns_fields: Mapping[str, Iterable[str]] | None = None,
) -> SignaturePath:
    """With probability `p`, put an empty `miss_func` or `miss_params` turn before a call turn.

    As BFCL defines it, Split stands only before a call turn of exactly one function with
    no nested calls, so the next turn's reference is that function's call (`target`).
    `miss_func`: the function is held out until that turn (only when no earlier turn used it).
    `miss_params`: the query leaves out one required parameter (`missing`) that cannot be
    inferred: no edge mapping (`mappings`, (source, target) -> {parameter: output field})
    from a function of an earlier turn feeds it, and no earlier function returns a top-level
    field of its name (`returns_fields`, function -> field names). The assistant must ask;
    the next user turn gives just that value. A turn where neither fits is never chosen;
    with no such turn the path is returned unchanged.
    """
    mappings = mappings or {}
    returns_fields = returns_fields or {}
    options: list[tuple[int, list[str], list[str]]] = []  # (turn index, kinds, missing candidates)
    for i, turn in enumerate(path.turns):
        if turn.kind != CALL or len(turn.functions) != 1 or turn.nested:
            continue
        function = turn.functions[0]
        earlier = [f for t in path.turns[:i] for f in t.functions]
        known = inferable_parameters(function, earlier, mappings, returns_fields)
        missing = [r for r in required.get(function, ()) if r not in known]
        kinds = ([MISS_FUNC] if function not in earlier else []) + ([MISS_PARAMS] if missing else [])
        if kinds:
            options.append((i, kinds, missing))
    if not options or rng.random() >= p:
        return path
    i, kinds, missing = rng.choice(options)
    kind = rng.choice(kinds)
    empty = Turn(
        (),
        kind=kind,
        target=path.turns[i].functions,
        operations=(f"split_{kind}",),
        missing=(rng.choice(missing),) if kind == MISS_PARAMS else (),
    )
    turns = list(path.turns)
    turns.insert(i, empty)
    return replace(path, turns=tuple(turns), operations=path.operations + (f"split_{kind}",))


def shape_counts(mix: dict[str, float], multi_turn_paths: int, functions: int) -> dict[str, int]:
    """How many single-turn examples of each shape go with `multi_turn_paths` walks.

    The shares are of the whole set; with no multi-turn share, one example per function
    is the base.
    """
    total = multi_turn_paths / mix[MULTI_TURN] if mix.get(MULTI_TURN) else functions
    return {shape: round(total * mix.get(shape, 0.0)) for shape in SHAPES if shape != MULTI_TURN}


def single_turn_paths(
    counts: dict[str, int], required: dict[str, list[str]], rng: random.Random
) -> list[SignaturePath]:
    """Single-turn examples, round-robin over the functions so each shape covers the catalog.

    `parallel` uses functions with a required parameter (two calls must differ somewhere)
    and makes two or three calls.
    """
    names = sorted(required)
    with_params = [n for n in names if required[n]]
    paths = []
    for shape in (SINGLE, PARALLEL, MULTIPLE, IRRELEVANCE):
        pool = with_params if shape == PARALLEL else names
        if not pool:
            continue
        order = rng.sample(pool, len(pool))
        for i in range(counts.get(shape, 0)):
            f = order[i % len(order)]
            if shape == PARALLEL:
                turn = Turn((f,) * rng.choice((2, 3)))
            elif shape == IRRELEVANCE:
                turn = Turn((), kind=IRRELEVANT, target=(f,))
            else:
                turn = Turn((f,))
            paths.append(SignaturePath(walk=(f,), turns=(turn,), shape=shape))
    return paths


def distractor_count(shape: str, configured: int) -> int:
    """Functions offered beside the path's own: none for `single`, at least two where the
    shape is about choosing (`multiple`) or about having nothing that fits (`irrelevance`)."""
    if shape == SINGLE:
        return 0
    if shape in (MULTIPLE, IRRELEVANCE):
        return max(configured, 2)
    return configured


def operation_mix(paths: list[SignaturePath]) -> dict[str, int]:
    mix: dict[str, int] = {}
    for path in paths:
        for op in path.operations:
            mix[op] = mix.get(op, 0) + 1
    return mix
