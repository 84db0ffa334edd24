"""Dagster definitions: assets by stage, sensors, schedules, resources, partitions."""
