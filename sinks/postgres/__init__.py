"""The PostgreSQL sink: operational state for the HTTP API and the archive for replay."""
