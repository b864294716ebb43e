"""Outgoing webhooks: public payment events POSTed, signed, to the booking platform."""
