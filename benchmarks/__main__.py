"""`python -m benchmarks`: every benchmark, one after the other."""

import sys

from benchmarks import cache_startup, embedded_server, evaluation, graph_building, llm_client, scale

BENCHMARKS = [
    ("LLM client", llm_client.main),
    ("LLM cache start-up", cache_startup.main),
    ("evaluation client", evaluation.main),
    ("graph building", graph_building.main),
    ("scale, 500 functions through every asset", scale.main),
    ("embedded server", embedded_server.main),
]


def main() -> int:
    status = 0
    for name, run in BENCHMARKS:
        print(f"== {name}", flush=True)
        status |= run([])
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
