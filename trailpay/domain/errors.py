"""One error base for TrailPay.

Whether a failure is retried or dead-lettered is a property of the error type,
not of the code that catches it::

    TrailPayError
    ├── ConfigurationError          bad settings; fail at start with one line
    ├── RetriableError              try again later (outage, timeout, 5xx)
    └── PermanentError              do not retry; dead-letter or answer 4xx
        ├── InvalidRecord           a record that does not decode or validate
        ├── IllegalTransition       a payment cannot move from one status to another
        ├── ProviderRejected        the provider said no (decline, bad phone...)
        ├── Suspicious              a provider event that does not match its payment
        └── AmountNotAccepted       an amount the provider cannot take
"""

from __future__ import annotations


class TrailPayError(Exception):
    """Base of every TrailPay error."""

    retriable: bool = False


class ConfigurationError(TrailPayError):
    """Settings are missing or invalid; the message names the variable."""


class RetriableError(TrailPayError):
    """A transient failure: the same call may succeed later."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(TrailPayError):
    """Retrying will not help: dead-letter the record or answer 4xx."""


class InvalidRecord(PermanentError):
    """A record failed to decode or validate against its contract."""


class IllegalTransition(PermanentError):
    """A payment may not move from ``current`` to ``target``."""

    def __init__(self, reference: str, current: str, target: str) -> None:
        super().__init__(f"payment {reference}: illegal transition {current} -> {target}")
        self.reference = reference
        self.current = current
        self.target = target


class ProviderRejected(PermanentError):
    """A provider refused a request; its own code and text are kept."""

    def __init__(self, provider: str, code: str, message: str) -> None:
        super().__init__(f"{provider} rejected the request: {code} {message}")
        self.provider = provider
        self.code = code
        self.provider_message = message


class Suspicious(PermanentError):
    """A provider event that does not match the payment it names (another provider, an
    unknown provider reference, another amount or currency): never applied, dead-lettered
    at a stage of its own (ARCHITECTURE.md property 10). ``reason`` is a short code for
    metrics (``provider_mismatch``, ``reference_mismatch``, ``amount_mismatch`` ...)."""

    def __init__(self, reference: str, provider: str, reason: str, detail: str) -> None:
        super().__init__(f"payment {reference}: suspicious {provider} event ({reason}): {detail}")
        self.reference = reference
        self.provider = provider
        self.reason = reason
        self.detail = detail


class AmountNotAccepted(PermanentError):
    """An amount a provider cannot take (below its minimum, above its maximum, more
    precision than its wire format). ``reason`` is written for an API client (422)."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
