"""Faust agents: each module's ``register(ctx, ...)`` declares its agents, tables and timers;
:func:`streams.worker.wire` calls them in order with what each needs."""
