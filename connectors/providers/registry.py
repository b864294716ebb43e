"""Which handler and gateway serves each provider, built from the one Settings object."""

from __future__ import annotations

from connectors.providers.airtel_callbacks import AirtelCallbackHandler
from connectors.providers.airtel_client import AirtelGateway
from connectors.providers.base import ProviderGateway, WebhookHandler
from connectors.providers.mpesa_callbacks import MpesaCallbackHandler
from connectors.providers.mpesa_client import MpesaGateway
from connectors.providers.stripe_client import StripeGateway
from connectors.providers.stripe_webhooks import StripeWebhookHandler
from trailpay.domain.events import Provider
from trailpay.settings import Settings


def webhook_handlers(settings: Settings) -> dict[Provider, WebhookHandler]:
    """Pure, synchronous verifiers/normalisers for every provider's webhooks and callbacks."""
    return {
        Provider.STRIPE: StripeWebhookHandler.from_settings(settings),
        Provider.MPESA: MpesaCallbackHandler.from_settings(settings),
        Provider.AIRTEL: AirtelCallbackHandler.from_settings(settings),
    }


def gateways(settings: Settings) -> dict[Provider, ProviderGateway]:
    """Network gateways the dispatcher calls; each owns an HTTP client (``aclose`` it)."""
    return {
        Provider.STRIPE: StripeGateway.from_settings(settings),
        Provider.MPESA: MpesaGateway.from_settings(settings),
        Provider.AIRTEL: AirtelGateway.from_settings(settings),
    }
