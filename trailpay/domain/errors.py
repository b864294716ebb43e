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
        └── ProviderRejected        no    the provider said no (decline, bad phone...)

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
