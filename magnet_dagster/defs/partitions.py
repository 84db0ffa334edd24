"""One partition per tool set; keys are checked names (see tools.spec.check_tool_set_name)."""

import dagster as dg

#: the partitions' name, for the instance's dynamic-partition calls
TOOL_SETS = "tool_sets"
tool_sets = dg.DynamicPartitionsDefinition(name=TOOL_SETS)
