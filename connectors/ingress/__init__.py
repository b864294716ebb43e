"""The HTTP ingress: the seed's payments and Stripe APIs, provider webhooks, booking events.

Writes become records on Kafka (``payments.requests.v1``, ``webhooks.raw.v1``,
``bookings.events.v1``); reads come from the PostgreSQL read model the sink fills. Build the
app with :func:`connectors.ingress.app.create_app`. This package's ``__init__`` imports
nothing heavy, so the pure :mod:`connectors.ingress.catalog` can be used by stream agents.
"""
