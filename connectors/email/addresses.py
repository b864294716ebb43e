"""Whether an address can be a recipient: one mailbox, no header injection.

``email`` reaches us from clients (and bookings) that nobody validated for us: an address
with CR/LF would inject headers (the standard library refuses it when the header is set,
so the message cannot even be built), and one with several mailboxes or none cannot be
sent to. Such a notification is refused for good (a dead letter), never retried.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

from trailpay.domain.errors import PermanentError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Deliberately loose: the mail server decides the rest; this only keeps a header one
#: mailbox long. local@domain, a dot in the domain, no spaces or angle brackets.
_MAILBOX = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\.]+$")
MAX_LENGTH = 320


class UnsendableAddress(PermanentError):
    """The recipient address cannot be put in a header or sent to."""


def checked_address(address: str) -> str:
    """``address`` stripped of surrounding blanks, or :class:`UnsendableAddress` saying why."""
    if _CONTROL.search(address):
        raise UnsendableAddress("recipient address contains a control character (CR/LF or similar)")
    candidate = address.strip()
    if len(candidate) > MAX_LENGTH:
        raise UnsendableAddress(f"recipient address longer than {MAX_LENGTH} characters")
    if not _MAILBOX.match(candidate) or len(getaddresses([candidate])) != 1:
        raise UnsendableAddress("recipient address is not one mailbox (local@domain)")
    return candidate
