"""The ``trailpay`` command line."""
