"""magnet-dagster: the Magnet method (graph-based multi-turn tool-use data synthesis) on Dagster."""
