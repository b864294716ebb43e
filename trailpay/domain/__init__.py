"""The pure payment domain: money, statuses, event contracts, the state machine.

Nothing in this package imports Faust, Kafka or SQL; replay tools and tests use it as is.
"""
