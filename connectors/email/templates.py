"""The e-mails we send, rendered from a :class:`Notification` (pure: no network).

The amount is formatted from minor units (``KES 1,250.00``); free text from providers is
scrubbed (phone numbers masked, anything card-like removed). The Message-ID and Date come
from the notification itself, so re-rendering gives the same message.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import format_datetime

from connectors.email.addresses import checked_address
from trailpay.domain.errors import PermanentError
from trailpay.domain.events import Notification, NotificationTemplate, Provider
from trailpay.domain.money import Money, exponent
from trailpay.logs import scrub
from trailpay.settings import Settings

PROVIDER_NAMES = {Provider.STRIPE: "card", Provider.MPESA: "M-Pesa", Provider.AIRTEL: "Airtel Money"}


def format_amount(money: Money) -> str:
    return f"{money.currency} {money.major:,.{exponent(money.currency)}f}"


def _subject_and_text(n: Notification, site: str) -> tuple[str, str]:
    amount = format_amount(n.amount)
    via = PROVIDER_NAMES.get(n.provider, n.provider.value)
    booking = f" for booking {n.booking_id}" if n.booking_id else ""
    detail = scrub(n.detail).strip()
    if n.template is NotificationTemplate.PAYMENT_SUCCEEDED:
        subject = f"Payment received: {amount} ({n.reference})"
        lines = [f"We received your payment of {amount}{booking} by {via}.",
                 "", f"Payment reference: {n.reference}", "", "Thank you for travelling with us."]
    elif n.template is NotificationTemplate.PAYMENT_FAILED:
        subject = f"Payment not completed: {amount} ({n.reference})"
        lines = [f"Your payment of {amount}{booking} by {via} did not go through."]
        if detail:
            lines += ["", f"Reason: {detail}"]
        lines += ["", f"Payment reference: {n.reference}",
                  "You have not been charged for this attempt. You can try again from your booking."]
    elif n.template is NotificationTemplate.PAYMENT_SUCCEEDED_LATE:
        subject = f"Payment received after all: {amount} ({n.reference})"
        lines = [f"Your payment of {amount}{booking} by {via} reached us after we had told you "
                 "it did not go through.", "", f"{detail[:1].upper()}{detail[1:]}.",
                 "", f"Payment reference: {n.reference}"]
    else:
        subject = f"Refund issued: {amount} ({n.reference})"
        lines = [f"We refunded {amount}{booking} to your {via} account.",
                 "", f"Payment reference: {n.reference}",
                 "Depending on your provider it may take a few days to show."]
    text = "Hello,\n\n" + "\n".join(lines) + f"\n\n{site}\n"
    return subject, text


class Unrenderable(PermanentError):
    """The notification cannot be made into a message (its cause says why)."""


def render(n: Notification, settings: Settings) -> EmailMessage:
    """The message for ``n``; :class:`UnsendableAddress` for a recipient that cannot be a
    header, :class:`Unrenderable` for anything else in it that cannot be a message. Both
    are permanent: the notification is a dead letter, never a retry or a stopped agent."""
    if not n.email:
        raise Unrenderable(f"notification {n.event_id} has no recipient")
    recipient = checked_address(n.email)
    try:
        return _message(n, settings, recipient)
    except (ValueError, TypeError, LookupError, UnicodeError) as exc:
        raise Unrenderable(f"notification {n.event_id} cannot be rendered: {exc}") from exc


def _message(n: Notification, settings: Settings, recipient: str) -> EmailMessage:
    subject, text = _subject_and_text(n, settings.site_name)
    msg = EmailMessage()
    msg["From"] = f"{settings.site_name} <{settings.email_from}>"
    msg["To"] = recipient
    msg["Subject"] = _one_line(f"{settings.site_name}: {subject}", 300)
    msg["Date"] = format_datetime(n.occurred_at)
    msg["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9.-]', '.', n.event_id)[:120]}@trailpay>"
    msg["X-TrailPay-Notification"] = _one_line(n.event_id)
    msg["X-TrailPay-Reference"] = _one_line(n.reference)
    msg["X-TrailPay-Template"] = n.template.value
    msg.set_content(text)
    msg.as_bytes()  # a value that cannot be serialized fails here, not in the sender
    return msg


def _one_line(value: str, limit: int = 200) -> str:
    """A header value from text we did not write: control characters (CR/LF) are blanks."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", value)[:limit]
