"""Dashboards: the ClickHouse SQL behind every chart, and what renders it for people."""
