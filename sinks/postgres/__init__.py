"""The PostgreSQL sink: operational state for the HTTP API and the archive for replay."""

# The outgoing-webhook tables sit on the schema's metadata in a module of their own; imported
# here so whoever imports the schema (migrations test, tools) sees every table.
from sinks.postgres import webhook_tables as webhook_tables
