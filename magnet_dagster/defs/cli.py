"""Register tool sets as partitions from the shell (what the sensor does, without the daemon).

    python -m magnet_dagster.defs.cli add bfcl_demo [more ...]

Each name must be a checked tool-set name with a file or folder in MAGNET_TOOL_SETS_DIR.
"""

import argparse
import sys

import dagster as dg

from magnet_dagster.defs.partitions import TOOL_SETS
from magnet_dagster.tools.formats import find_tool_set
from magnet_dagster.tools.spec import ToolSetError, check_tool_set_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="magnet_dagster.defs.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="register tool sets as partitions of `tool_sets`")
    add.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            check_tool_set_name(name)
            find_tool_set(name)
    except ToolSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    instance = dg.DagsterInstance.get()
    existing = set(instance.get_dynamic_partitions(TOOL_SETS))
    new = [n for n in args.names if n not in existing]
    if new:
        instance.add_dynamic_partitions(TOOL_SETS, new)
    print(f"tool_sets partitions: added {new or 'none'}; already there: {sorted(set(args.names) - set(new)) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
