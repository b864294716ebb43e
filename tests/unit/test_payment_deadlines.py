"""Deadlines per provider and status: card windows are hours, mobile-money prompts minutes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.unit.payment_factory import at, create, created, status_event
from trailpay.domain.commands import expire_request
from trailpay.domain.deadlines import DEFAULT_POLICY, DeadlinePolicy
from trailpay.domain.events import Provider
from trailpay.domain.state_machine import apply
from trailpay.domain.status import PaymentStatus

S = PaymentStatus
REF = "TPTEST0000000000000001"

#: (provider, status) -> seconds the status may last by default (None: no deadline).
DEFAULT_WINDOWS = {
    (Provider.STRIPE, S.CREATED): 86_400,
    (Provider.STRIPE, S.PENDING): 86_400,
    (Provider.STRIPE, S.PROCESSING): 3_600,
    (Provider.MPESA, S.CREATED): 120,
    (Provider.MPESA, S.PENDING): 120,
    (Provider.MPESA, S.PROCESSING): 600,
    (Provider.AIRTEL, S.PENDING): 120,
    (Provider.AIRTEL, S.PROCESSING): 600,
    (Provider.STRIPE, S.SUCCEEDED): None,
    (Provider.MPESA, S.EXPIRED): None,
}


@pytest.mark.parametrize(("case", "seconds"), DEFAULT_WINDOWS.items(),
                         ids=[f"{p.value}-{s.value}" for p, s in DEFAULT_WINDOWS])
def test_default_windows(case, seconds):
    provider, status = case
    window = DEFAULT_POLICY.window(status, provider)
    assert window == (None if seconds is None else timedelta(seconds=seconds))


def test_a_card_payment_is_not_expired_within_minutes():
    payment = apply(None, create(REF, provider=Provider.STRIPE, seconds=0)).payment
    assert payment is not None and payment.snapshot.deadline_at == at(86_400)
    action = apply(payment, status_event(REF, S.PROCESSING, provider=Provider.STRIPE, seconds=60,
                                         provider_reference="pi_1")).payment
    assert action is not None and action.snapshot.deadline_at == at(60 + 3_600)
    mobile = created(REF)
    assert mobile.snapshot.deadline_at == at(120)


def test_grace_is_the_same_for_every_provider():
    assert DEFAULT_POLICY.grace(S.PENDING) == timedelta(seconds=60)
    assert DEFAULT_POLICY.grace(S.PROCESSING) == timedelta(seconds=300)
    assert DeadlinePolicy(pending_s=4).grace(S.PENDING) == timedelta(seconds=5)
    card = created(REF, provider=Provider.STRIPE)
    assert expire_request(card).occurred_at == at(86_400 + 60)


@dataclass
class _Settings:
    pending_deadline_s: int = 30
    processing_deadline_s: int = 90


@dataclass
class _CardSettings(_Settings):
    card_pending_deadline_s: int = 7_200
    card_processing_deadline_s: int = 900


def test_from_settings():
    assert DeadlinePolicy.from_settings(_Settings()) == DeadlinePolicy(
        pending_s=30, processing_s=90, card_pending_s=86_400, card_processing_s=3_600)
    assert DeadlinePolicy.from_settings(_CardSettings()) == DeadlinePolicy(
        pending_s=30, processing_s=90, card_pending_s=7_200, card_processing_s=900)
