"""Provider sandboxes: Stripe, M-Pesa Daraja and Airtel Money wire protocols, in one process.

Outcomes are deterministic from the inputs; the rules are in docs/sandboxes.md.
"""
