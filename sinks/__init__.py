"""Sinks: PostgreSQL (operational state) and ClickHouse (facts and rollups)."""
