"""BFCL's executable multi-turn classes as a bundled, executable tool set.

The classes and their function docs come from the installed `bfcl-eval` package. Calls go
through our `Dispatcher`, never through bfcl's `execute_multi_turn_func_call` (which
`eval`s model text). Starting states are generated here from a seed, so synthesis never
copies an `initial_config` from BFCL's evaluation data.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from magnet_dagster.tools.dispatcher import Dispatcher
from magnet_dagster.tools.spec import FunctionSpec, ToolSetError

FUNC_SOURCE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"


def package_dir() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ToolSetError("bfcl-eval is not installed (make install does it)")
    return Path(next(iter(spec.submodule_search_locations)))


def class_files() -> tuple[dict[str, str], dict[str, str], set[str]]:
    """(class -> func doc file, class -> module, stateless classes), from bfcl's own table."""
    from bfcl_eval.constants import executable_backend_config as cfg

    return (dict(cfg.MULTI_TURN_FUNC_DOC_FILE_MAPPING), dict(cfg.CLASS_FILE_PATH_MAPPING), set(cfg.STATELESS_CLASSES))


def func_doc_path(class_name: str) -> Path:
    docs, _, _ = class_files()
    if class_name not in docs:
        raise ToolSetError(f"unknown BFCL class {class_name!r}; known: {sorted(docs)}")
    return package_dir() / "data" / "multi_turn_func_doc" / docs[class_name]


def load_class(class_name: str) -> type:
    _, modules, _ = class_files()
    if class_name not in modules:
        raise ToolSetError(f"unknown BFCL class {class_name!r}")
    return getattr(importlib.import_module(modules[class_name]), class_name)


# ------------------------------------------------------------- starting states

_FIRST = ["alice", "bob", "carmen", "deepak", "eun", "farah", "goran", "hiro"]
_TOPICS = [
    "printer offline",
    "VPN drops",
    "laptop battery",
    "email sync",
    "badge access",
    "monitor flicker",
    "password reset",
    "disk full",
]


def _ticket_state(rng: random.Random) -> dict[str, Any]:
    user = rng.choice(_FIRST)
    queue = []
    for i in range(rng.randint(1, 4)):
        topic = rng.choice(_TOPICS)
        queue.append(
            {
                "id": 100 + i,
                "title": topic.capitalize(),
                "description": f"{topic} since {rng.randint(1, 9)} days",
                "status": rng.choice(["Open", "In Progress"]),
                "priority": rng.randint(1, 5),
                "created_by": user,
            }
        )
    return {"ticket_queue": queue, "ticket_counter": 100 + len(queue), "current_user": user}


def _message_state(rng: random.Random) -> dict[str, Any]:
    users = rng.sample([n.capitalize() for n in _FIRST], 4)
    user_map = {name: f"USR{100 + i}" for i, name in enumerate(users)}
    return {
        "random_seed": rng.randint(1, 10**6),
        "user_count": len(users),
        "user_map": user_map,
        "inbox": [{user_map[users[1]]: f"Hi {users[0]}, {rng.choice(_TOPICS)}?"}],
        "message_count": 1,
        "current_user": user_map[users[0]],
        "generated_ids": set(),
    }


#: Seeded generators of starting states; classes without one start from their defaults.
STATE_GENERATORS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "TicketAPI": _ticket_state,
    "MessageAPI": _message_state,
}


def initial_state(class_name: str, seed: int) -> dict[str, Any]:
    gen = STATE_GENERATORS.get(class_name)
    return gen(random.Random(f"{class_name}:{seed}")) if gen else {}


def new_instances(classes: list[str], seed: int) -> tuple[dict[str, object], dict[str, Any]]:
    """Fresh instances for one conversation, each loaded with a generated state."""
    _, _, stateless = class_files()
    instances: dict[str, object] = {}
    states: dict[str, Any] = {}
    for name in classes:
        obj = load_class(name)()
        if name not in stateless:
            state = initial_state(name, seed)
            obj._load_scenario(json.loads(json.dumps(state, default=list)) | _sets(state))
            states[name] = state
        instances[name] = obj
    return instances, states


def _sets(state: dict[str, Any]) -> dict[str, Any]:
    """Keep set-valued fields as sets after the JSON round trip used for copying."""
    return {k: set(v) for k, v in state.items() if isinstance(v, set)}


def dispatcher(
    classes: list[str], allowed: set[str], seed: int, time_limit_s: float = 5.0
) -> tuple[Dispatcher, dict[str, Any]]:
    instances, states = new_instances(classes, seed)
    return Dispatcher.for_instances(instances, allowed, time_limit_s), states


def func_docs(class_name: str) -> list[tuple[int, dict[str, Any]]]:
    path = func_doc_path(class_name)
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            out.append((lineno, json.loads(line)))
    return out


def bfcl_functions(classes: list[str], gorilla_to_spec: Callable[..., FunctionSpec]) -> list[FunctionSpec]:
    specs = []
    for name in classes:
        path = func_doc_path(name)
        for lineno, doc in func_docs(name):
            specs.append(
                gorilla_to_spec(doc, source=f"{path.name}:{lineno}", tool=name, category=name, executable=True)
            )
    return specs
