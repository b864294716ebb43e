"""The embedded stack: supervisor, child processes and the ``stack.json`` contract."""
