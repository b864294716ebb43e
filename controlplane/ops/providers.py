"""The ``providers`` table from settings: ``trailpay providers setup|list``.

The seed's ``setup_payment_providers``: one row per provider this deployment offers, from
the catalog (:func:`trailpay.routing.providers`) and settings. Idempotent: rows
are upserted, and only rows whose content changed get a new ``updated_at``. Only
non-secret configuration is stored (which endpoint, shortcode, market); keys and secrets
stay in the environment.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from sinks.postgres import schema
from trailpay.domain.events import Provider
from trailpay.routing import providers
from trailpay.settings import Settings


def _endpoint(configured: str | None, settings: Settings, path: str) -> str:
    return configured or f"embedded sandbox (http://127.0.0.1:{settings.sandbox_port}/{path})"


def provider_rows(settings: Settings) -> list[dict[str, Any]]:
    config: dict[Provider, dict[str, Any]] = {
        Provider.STRIPE: {
            "api_base": _endpoint(settings.stripe_api_base, settings, "stripe"),
            "publishable_key": settings.stripe_publishable_key,
            "webhook_secrets": len(settings.stripe_webhook_secrets),
        },
        Provider.MPESA: {
            "base_url": _endpoint(settings.mpesa_base_url, settings, "mpesa"),
            "shortcode": settings.mpesa_shortcode,
        },
        Provider.AIRTEL: {
            "base_url": _endpoint(settings.airtel_base_url, settings, "airtel"),
            "country": settings.airtel_country.upper(),
            "currency": settings.airtel_currency.upper(),
            "signed_callbacks": settings.airtel_callback_secret is not None,
        },
    }
    rows = []
    for code, info in sorted(providers(settings).items(), key=lambda kv: kv[1].id):
        public = info.public()
        rows.append({
            "code": code.value,
            "name": info.name,
            "active": True,
            "currencies": public["currencies"],
            "countries": public["countries"] or [],
            "methods": public["methods"],
            "config": {"id": info.id, "requires_phone_number": info.needs_phone,
                       "whole_units_only": info.whole_units_only, **config[code]},
        })
    return rows


async def setup_providers(engine: AsyncEngine, settings: Settings) -> dict[str, str]:
    """Upsert every provider; returns code -> "created" | "updated" | "unchanged"."""
    t = schema.providers
    rows = provider_rows(settings)
    outcome: dict[str, str] = {}
    async with engine.begin() as conn:
        before = {r.code for r in await conn.execute(select(t.c.code))}
        for row in rows:
            stmt = insert(t).values(**row)
            ex = stmt.excluded
            changed = or_(*(t.c[name].is_distinct_from(ex[name])
                            for name in ("name", "active", "currencies", "countries", "methods", "config")))
            upsert = stmt.on_conflict_do_update(
                index_elements=[t.c.code],
                set_={**{name: ex[name] for name in row if name != "code"}, "updated_at": func.now()},
                where=changed,
            ).returning(t.c.code)
            written = (await conn.execute(upsert)).first() is not None
            if row["code"] not in before:
                outcome[row["code"]] = "created"
            else:
                outcome[row["code"]] = "updated" if written else "unchanged"
    return outcome


async def list_providers(engine: AsyncEngine) -> list[dict[str, Any]]:
    t = schema.providers
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(t).order_by(t.c.code))]
