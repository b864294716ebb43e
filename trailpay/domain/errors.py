"""One error base for TrailPay.

Whether a failure is retried or dead-lettered is a property of the error type, not of
the code that catches it: every class says so in its ``retriable`` attribute (as
aiokafka's errors do), and :func:`is_retriable` is what the retry policy
(:mod:`trailpay.retry`) and every consumer read::

    TrailPayError                   retriable
    ├── ConfigurationError          no    bad settings; fail at start with one line
    ├── RetriableError              yes   try again later (outage, timeout, 5xx)
    └── PermanentError              no    do not retry; dead-letter or answer 4xx
        ├── InvalidRecord           no    a record that does not decode or validate
        ├── IllegalTransition       no    a payment cannot move from one status to another
        ├── ProviderRejected        no    the provider said no (decline, bad phone...)
        ├── Suspicious              no    a provider event that does not match its payment
        └── AmountNotAccepted       no    an amount the provider cannot take

An exception that is no ``TrailPayError`` carries no handling: to a consumer it is a bug.
"""

from __future__ import annotations


class TrailPayError(Exception):
    """Base of every TrailPay error."""

    #: True: the same call may succeed later (retry it); False: dead-letter it (or refuse).
    retriable: bool = False


def is_retriable(exc: BaseException) -> bool:
    """Whether ``exc`` is to be retried: a TrailPay error whose class says so."""
    return isinstance(exc, TrailPayError) and exc.retriable


class ConfigurationError(TrailPayError):
    """Settings are missing or invalid; the message names the variable."""

    retriable = False


class RetriableError(TrailPayError):
    """A transient failure: the same call may succeed later."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(TrailPayError):
    """Retrying will not help: dead-letter the record or answer 4xx."""

    retriable = False


class InvalidRecord(PermanentError):
    """A record failed to decode or validate against its contract."""

    retriable = False


class IllegalTransition(PermanentError):
    """A payment may not move from ``current`` to ``target``."""

    retriable = False

    def __init__(self, reference: str, current: str, target: str) -> None:
        super().__init__(f"payment {reference}: illegal transition {current} -> {target}")
        self.reference = reference
        self.current = current
        self.target = target


class ProviderRejected(PermanentError):
    """A provider refused a request; its own code and text are kept."""

    retriable = False

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

    retriable = False

    def __init__(self, reference: str, provider: str, reason: str, detail: str) -> None:
        super().__init__(f"payment {reference}: suspicious {provider} event ({reason}): {detail}")
        self.reference = reference
        self.provider = provider
        self.reason = reason
        self.detail = detail


class AmountNotAccepted(PermanentError):
    """An amount a provider cannot take (below its minimum, above its maximum, more
    precision than its wire format). ``reason`` is written for an API client (422)."""

    retriable = False

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
