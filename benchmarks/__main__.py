"""`python -m benchmarks`: every benchmark, one after the other."""

import sys

from benchmarks import evaluation, graph_building, llm_client

BENCHMARKS = [("LLM client", llm_client.main), ("evaluation client", evaluation.main),
              ("graph building", graph_building.main)]


def main() -> int:
    status = 0
    for name, run in BENCHMARKS:
        print(f"== {name}", flush=True)
        status |= run([])
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
