"""``trailpay ingress`` (the HTTP API) and ``trailpay users`` / ``trailpay tokens``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from controlplane.cli.audit_cmd import ops_audited, reason_option
from controlplane.cli.common import data_dir_option, friendly_errors, init_logging, settings_for
from trailpay.settings import Settings, load_settings

T = TypeVar("T")
#: The token roles (connectors.ingress.auth.Role; not imported here: it loads FastAPI).
ROLES = ["user", "admin", "support", "viewer"]
ROLE_HELP = ("admin may use /api/admin/ and POST /api/bookings/events/; support may cancel and "
             "refund any payment (with a reason) and read /api/admin/payments/; viewer reads the "
             "dashboard's figures")


def _db_settings(data_dir: Path | None) -> Settings:
    """TRAILPAY_DATABASE_URL if set, else the running stack's stack.json."""
    base = load_settings(**({"data_dir": data_dir} if data_dir else {}))
    return base if base.database_url else settings_for(data_dir)


def _with_engine(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def main() -> T:
        engine = create_async_engine(settings.sqlalchemy_async_url())
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


@click.command()
@data_dir_option
@click.option("--host", default=None, help="Address to listen on (default $TRAILPAY_API_HOST or 127.0.0.1)")
@click.option("--port", type=int, default=None, help="Port (default $TRAILPAY_API_PORT or 8000)")
@friendly_errors
def ingress(data_dir: Path | None, host: str | None, port: int | None) -> None:
    """Run the HTTP API: payments, Stripe, provider webhooks, booking events, /docs."""
    import uvicorn

    from connectors.ingress.app import create_app

    settings = settings_for(data_dir)
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["api_host"] = host
    if port is not None:
        overrides["api_port"] = port
    if overrides:
        settings = settings.model_copy(update=overrides)
    init_logging(settings, "ingress")
    click.echo(f"TrailPay API on {settings.api_base_url} (docs at /docs)")
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_level="warning", access_log=False, log_config=None)


@click.group("users")
def users_group() -> None:
    """Manage API users (stored in PostgreSQL)."""


@users_group.command("create")
@data_dir_option
@click.option("--email", required=True, help="The user's e-mail (unique)")
@click.option("--role", type=click.Choice(ROLES), default="user", show_default=True, help=ROLE_HELP)
@click.option("--id", "user_id", default=None,
              help="User id (default: a new usr_...; use the booking platform's id to link bookings)")
@reason_option
@friendly_errors
def users_create(data_dir: Path | None, email: str, role: str, user_id: str | None,
                 reason: str | None) -> None:
    """Create a user; then issue a token with `trailpay tokens create --email ...`."""
    from connectors.ingress.auth import Role, create_user

    async def run(engine: Any) -> Any:
        async with ops_audited(engine, "user.create", email.strip().lower(), reason=reason,
                               details={"role": role}) as extra:
            user = await create_user(engine, email, cast(Role, role), user_id)
            extra["user_id"] = user.id
        return user

    user = _with_engine(_db_settings(data_dir), run)
    click.echo(f"created {user.role} {user.email} with id {user.id}")


@click.group("tokens")
def tokens_group() -> None:
    """Issue, list and revoke API tokens (only their sha256 is stored)."""


@tokens_group.command("create")
@data_dir_option
@click.option("--email", required=True, help="Whose token")
@click.option("--name", default="", help="A label for the token (e.g. the client's name)")
@click.option("--role", type=click.Choice(ROLES), default=None,
              help="The user's role: creates the user with it when there is none yet, refuses "
                   "a user who has another. " + ROLE_HELP)
@reason_option
@friendly_errors
def tokens_create(data_dir: Path | None, email: str, name: str, role: str | None,
                  reason: str | None) -> None:
    """Issue a token and print it once: send it as `Authorization: Token <token>`."""
    from connectors.ingress.api_tokens import hash_token
    from connectors.ingress.auth import TOKEN_ID_LEN

    async def run(engine: Any) -> tuple[str, Any]:
        async with ops_audited(engine, "token.create", email.strip().lower(), reason=reason,
                               details={"name": name, "role": role}) as extra:
            token, user = await _issue(engine, email, name, role)
            extra.update(token_id=hash_token(token)[:TOKEN_ID_LEN], user_id=user.id,
                         role=user.role)
        return token, user

    token, user = _with_engine(_db_settings(data_dir), run)
    click.echo(token)
    click.echo(f"(token for {user.email}, role {user.role}; shown once, store it now)", err=True)


async def _issue(engine: Any, email: str, name: str, role: str | None) -> tuple[str, Any]:
    """A token for ``email``'s user; with ``role``, the user is made when missing and must
    have that role."""
    from connectors.ingress.auth import NoSuchUser, Role, create_token, create_user, find_user
    from trailpay.domain.errors import PermanentError

    if role is not None:
        try:
            user = await find_user(engine, email)
        except NoSuchUser:
            user = await create_user(engine, email, cast(Role, role))
        if user.role != role:
            raise PermanentError(f"{user.email} has the role {user.role}, not {role}; "
                                 "a user's role is set when it is created")
    return await create_token(engine, email, name)


@tokens_group.command("list")
@data_dir_option
@click.option("--email", default=None, help="Only this user's tokens")
@click.option("--all", "include_revoked", is_flag=True, help="Revoked tokens too")
@friendly_errors
def tokens_list(data_dir: Path | None, email: str | None, include_revoked: bool) -> None:
    """List tokens: id, owner, role, name, created, last used (never the token itself)."""
    from connectors.ingress.auth import list_tokens

    settings = _db_settings(data_dir)
    tokens = _with_engine(settings, lambda e: list_tokens(e, email, include_revoked=include_revoked))
    if not tokens:
        click.echo("no tokens")
        return
    click.echo(f"{'ID':<12}  {'OWNER':<32}  {'ROLE':<7}  {'CREATED':<16}  {'LAST USED':<16}  NAME")
    for t in tokens:
        used = t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never"
        state = f" (revoked {t.revoked_at:%Y-%m-%d %H:%M})" if t.revoked_at else ""
        click.echo(f"{t.id:<12}  {t.email:<32}  {t.role:<7}  {t.created_at:%Y-%m-%d %H:%M}  "
                   f"{used:<16}  {t.name}{state}")


@tokens_group.command("revoke")
@data_dir_option
@click.argument("token_id")
@reason_option
@friendly_errors
def tokens_revoke(data_dir: Path | None, token_id: str, reason: str | None) -> None:
    """Revoke the token with TOKEN_ID (from `trailpay tokens list`; a unique prefix will do).
    Running ingresses refuse it within 5 seconds."""
    from connectors.ingress.auth import revoke_token_id

    async def run(engine: Any) -> Any:
        async with ops_audited(engine, "token.revoke", token_id.strip().lower(),
                               reason=reason) as extra:
            token = await revoke_token_id(engine, token_id)
            extra.update(token_id=token.id, owner=token.email)
        return token

    token = _with_engine(_db_settings(data_dir), run)
    click.echo(f"revoked token {token.id} of {token.email} ({token.role})")
