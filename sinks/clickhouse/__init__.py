"""The ClickHouse sink: facts and duplicate-safe rollups for the dashboards."""
