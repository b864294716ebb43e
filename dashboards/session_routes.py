"""``/api/session``: the dashboard page trades a token for a session cookie, once.

The page posts the token, gets an HttpOnly, SameSite=Strict cookie and forgets the token:
nothing the page's scripts can read holds a credential afterwards.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from dashboards.access import READER_ROLES, access_of, from_token, principal
from dashboards.session import COOKIE_NAME

router = APIRouter(prefix="/api/session", tags=["dashboard sign-in"])


class SignIn(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="A token from `trailpay tokens create`")


@router.post("", summary="Sign in: exchange a token for a session cookie")
async def sign_in(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
    who = await from_token(request, body.token.strip())
    if who.via == "service":
        raise HTTPException(403, "the service token is for TrailPay's tools, not for signing in")
    if who.role not in READER_ROLES:
        raise HTTPException(403, "the dashboard is for viewer, support and admin users "
                                 f"(this token's user has the role {who.role})")
    access = access_of(request)
    session_id, session = access.sessions.create(who.user_id, who.email, who.role)
    response.set_cookie(COOKIE_NAME, session_id, max_age=int(access.lifetime.total_seconds()),
                        path="/", httponly=True, samesite="strict", secure=access.secure_cookie)
    response.headers["Cache-Control"] = "no-store"
    return {"signed_in": True, "email": session.email, "role": session.role,
            "expires_at": session.expires_at.isoformat()}


@router.get("", summary="Who is signed in (signed_in false, with the reason, when nobody is)")
async def current(request: Request) -> dict[str, Any]:
    try:
        who = await principal(request)
    except HTTPException as exc:
        if exc.status_code != 401:
            raise
        return {"signed_in": False, "reason": exc.detail}
    session = access_of(request).sessions.get(request.cookies.get(COOKIE_NAME))
    return {"signed_in": True, "email": who.email, "role": who.role,
            "expires_at": session.expires_at.isoformat() if session else None}


@router.delete("", status_code=204, summary="Sign out")
async def sign_out(request: Request) -> Response:
    access_of(request).sessions.drop(request.cookies.get(COOKIE_NAME))
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict",
                           secure=access_of(request).secure_cookie)
    return response
