"""One partition per tool set; keys are checked names (see tools.spec.check_tool_set_name)."""

import dagster as dg

tool_sets = dg.DynamicPartitionsDefinition(name="tool_sets")
