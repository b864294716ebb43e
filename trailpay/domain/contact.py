"""How payments.state.v1 carries the customer's phone number and e-mail.

payments.state.v1 is read by the sinks, the analytics and whoever listens to it, and only
one reader needs the whole phone number back: the worker's restore agent, which gives the
state machine its payments again after the broker lost them (a restored mobile-money
payment must still be retried or refunded to that number). So the snapshot a state change
carries holds the masked phone number and e-mail, and the change carries them sealed
beside it (:class:`SealedContact`, AES-GCM under a key only the worker holds:
:mod:`trailpay.pii_crypto`). The worker's own table (its changelog) keeps them whole.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SealedContact(BaseModel):
    """The phone number and e-mail of a state change's payment, sealed for the restore
    agent; ``phone_prefix`` (country and operator digits, never the number) is what the
    regional charts group by."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Which key sealed it; None: the worker had no key and sealed nothing (a restore
    #: cannot give this payment its phone number back).
    key_id: str | None = Field(default=None, max_length=32)
    #: base64url of nonce, ciphertext and tag.
    sealed: str | None = Field(default=None, max_length=4096)
    phone_prefix: str | None = Field(default=None, max_length=8)
