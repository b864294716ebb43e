"""The ``trailpay`` command line.

Every ``trailpay`` invocation imports every command module (``main.COMMANDS``), so a command
imports the service it runs inside its function: measured on this machine, importing
``connectors.ingress.app`` costs ~690 ms, ``dashboards.server`` ~600 ms, ``sinks.postgres.sink``
~370 ms, ``streams.worker`` ~300 ms and the sandboxes ~320 ms, against ~360 ms for the whole
``controlplane.cli.main``. Module-level imports here are the light ones (click, settings, the
command helpers)."""
