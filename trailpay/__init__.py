"""TrailPay: the payments pipeline of Trails & Trails."""

__version__ = "0.1.0"
