"""The HTTP ingress: the seed's payments and Stripe APIs, provider webhooks, booking events.

Writes become records on Kafka (``payments.requests.v1``, ``webhooks.raw.v1``,
``bookings.events.v1``); reads come from the PostgreSQL read model the sink fills. Build the
app with :func:`connectors.ingress.app.create_app`. Provider routing (which provider takes a
currency, country and method) lives in the ground layer, :mod:`trailpay.routing`.
"""
