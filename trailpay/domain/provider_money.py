"""Each provider's money rules: how an amount is written on its wire, and its limits.

Our money is ISO-4217 minor units (:mod:`trailpay.domain.money`); a provider's wire may
differ (ARCHITECTURE.md property 8). One :class:`WireRule` per (provider, currency) says
how many decimals the wire amount has, what it must be a multiple of, and the smallest and
largest amount the provider takes. :func:`to_wire` / :func:`from_wire` convert at the
provider's boundary; :func:`amount_problem` says (for a 422) why an amount cannot be sent.

Sources (read 2026-12):

* Stripe, "Supported currencies", https://docs.stripe.com/currencies : zero-decimal
  currencies (amount = major units, e.g. 500 JPY is ``500``; MGA is one although ISO gives
  it two decimals); three-decimal currencies BHD, JOD, KWD, OMR, TND "require the
  least-significant (last) digit to be 0"; "Minimum and maximum charge amounts"
  (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts): a minimum per
  settlement currency (USD 0.50, EUR 0.50, GBP 0.30, ...) and an amount of at most eight
  digits (99999999 in the smallest unit). A currency without a listed minimum (KES, UGX,
  ...) must convert to at least the settlement currency's minimum, which depends on the
  day's rate: not checked here, Stripe answers ``amount_too_small``.
* M-Pesa Daraja STK Push: ``Amount`` "Only whole numbers are supported"
  (https://developer.safaricom.co.ke/apis/MpesaExpressSimulate), at least 1 KES; the
  Central Bank of Kenya set the mobile-money limit per transaction at KES 250,000 from
  15 August 2023 (https://financialday.co.ke/2262/cbk-increases-daily-mobile-money-transaction-limit-mobile-wallet-to-ksh250000-and-ksh500000/),
  for every mobile-money provider in Kenya, Airtel Money included.
* Airtel Money collections: ``transaction.amount`` is sent in whole units of the
  deployment's currency (our client refuses fractions); no published maximum outside Kenya,
  so none is enforced there.
"""

from __future__ import annotations

from dataclasses import dataclass

from trailpay.domain.errors import AmountNotAccepted
from trailpay.domain.events import Provider
from trailpay.domain.money import Money, exponent, to_major_units

#: Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal).
STRIPE_ZERO_DECIMAL: frozenset[str] = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
})
#: Stripe's three-decimal currencies: the wire amount's last digit must be 0.
STRIPE_THREE_DECIMAL: frozenset[str] = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
#: Stripe's minimum charge per currency, in ISO minor units (major units in the comment).
STRIPE_MINIMUM: dict[str, int] = {
    "USD": 50, "AED": 200, "AUD": 50, "BRL": 50, "CAD": 50, "CHF": 50,  # 0.50, 2.00 AED
    "CZK": 1500, "DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500,  # 15 CZK, 175 HUF
    "INR": 50, "JPY": 50, "MXN": 1000, "NOK": 300, "NZD": 50, "PLN": 200, "SEK": 300,
    "SGD": 50,
}
#: Stripe takes at most eight digits in the smallest unit of the wire.
STRIPE_MAX_WIRE = 99_999_999
#: Kenyan mobile money: at most KES 250,000 per transaction (CBK, August 2023).
KENYA_MOBILE_MONEY_MAX_KES = 250_000


@dataclass(frozen=True)
class WireRule:
    """How one provider writes amounts of one currency, and what it takes."""

    exponent: int  # decimals on the wire
    multiple_of: int = 1  # the wire amount must be a multiple of this
    minimum: int | None = None  # ISO minor units
    maximum: int | None = None  # ISO minor units


def _stripe(currency: str) -> WireRule:
    iso = exponent(currency)
    wire = 0 if currency in STRIPE_ZERO_DECIMAL else iso
    return WireRule(exponent=wire, multiple_of=10 if currency in STRIPE_THREE_DECIMAL else 1,
                    minimum=STRIPE_MINIMUM.get(currency),
                    maximum=STRIPE_MAX_WIRE * 10 ** (iso - wire))


def _mobile(currency: str) -> WireRule:
    unit = 10 ** exponent(currency)
    maximum = KENYA_MOBILE_MONEY_MAX_KES * unit if currency == "KES" else None
    return WireRule(exponent=0, minimum=unit, maximum=maximum)


def wire_rule(provider: Provider, currency: str) -> WireRule:
    """The rule for ``currency`` at ``provider``. M-Pesa takes KES only."""
    if provider is Provider.STRIPE:
        return _stripe(currency)
    if provider is Provider.MPESA and currency != "KES":
        raise AmountNotAccepted(provider.value, f"M-Pesa takes KES, not {currency}")
    return _mobile(currency)


def _shown(minor: int, currency: str) -> str:
    return f"{to_major_units(minor, currency):.{exponent(currency)}f} {currency}"


def _name(provider: Provider) -> str:
    return {Provider.STRIPE: "Stripe", Provider.MPESA: "M-Pesa", Provider.AIRTEL: "Airtel Money"}[provider]


def amount_problem(provider: Provider, money: Money) -> str | None:
    """Why ``provider`` cannot take ``money`` (a sentence for the API's 422), or None."""
    try:
        rule = wire_rule(provider, money.currency)
    except AmountNotAccepted as exc:
        return exc.reason
    name, cur = _name(provider), money.currency
    if money.amount <= 0:
        return "must be greater than zero"
    step = 10 ** (exponent(cur) - rule.exponent) * rule.multiple_of
    if money.amount % step:
        if rule.multiple_of > 1:
            return f"{name} takes {cur} amounts in multiples of {_shown(step, cur)}"
        return f"{name} takes whole {cur} amounts only (no fractions)"
    if rule.minimum is not None and money.amount < rule.minimum:
        return f"below {name}'s minimum of {_shown(rule.minimum, cur)}"
    if rule.maximum is not None and money.amount > rule.maximum:
        return f"above {name}'s maximum of {_shown(rule.maximum, cur)}"
    return None


def check_amount(provider: Provider, money: Money) -> None:
    """Raise :class:`AmountNotAccepted` with the reason when ``provider`` cannot take it."""
    problem = amount_problem(provider, money)
    if problem is not None:
        raise AmountNotAccepted(provider.value, problem)


def to_wire(provider: Provider, money: Money) -> int:
    """``money`` as the integer the provider's API expects (checked first)."""
    check_amount(provider, money)
    rule = wire_rule(provider, money.currency)
    return money.amount // 10 ** (exponent(money.currency) - rule.exponent)


def from_wire(provider: Provider, amount: int, currency: str) -> Money:
    """The provider's integer amount back in ISO minor units (no limits checked: it is
    what the provider reports, and the cross-checks compare it)."""
    code = currency.upper()
    rule = wire_rule(provider, code)
    return Money(amount=amount * 10 ** (exponent(code) - rule.exponent), currency=code)
