"""Admin authentication: `Authorization: Bearer <admin key>` for API clients, or a session cookie for the
review page. The cookie never holds the key itself: it holds an expiry and an HMAC of it keyed by the admin
key (changing the key logs every browser out). SameSite=Strict plus an Origin check keep other sites from
posting reviews with it."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

from fastapi import Request

from guard.errors import Forbidden, Unauthorized

COOKIE = "guard_admin"
SESSION_S = 12 * 3600


def admin_key(request: Request) -> str | None:
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "admin_key", None)


def session_token(key: str, expires: int) -> str:
    mac = hmac.new(key.encode(), f"guard-admin-session:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def new_session(key: str) -> str:
    return session_token(key, int(time.time()) + SESSION_S)


def _valid_session(key: str, token: str | None) -> bool:
    if not token or "." not in token:
        return False
    expires, _, _mac = token.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(token, session_token(key, int(expires)))


def _bearer_matches(key: str, header: str | None) -> bool:
    scheme, _, value = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), key.encode())


def is_admin(request: Request) -> bool:
    key = admin_key(request)
    if not key:
        return False
    if _bearer_matches(key, request.headers.get("authorization")):
        return True
    if _valid_session(key, request.cookies.get(COOKIE)):
        _same_origin(request)
        return True
    return False


def _same_origin(request: Request) -> None:
    """Cookie-authenticated writes must come from this site's own pages."""
    if request.method in ("GET", "HEAD"):
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("cross-site request refused")


def require_admin(request: Request) -> None:
    """FastAPI dependency for the admin API."""
    if not admin_key(request):
        raise Unauthorized("the admin API is disabled: set GUARD_ADMIN_KEY")
    if not is_admin(request):
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin key>' (GUARD_ADMIN_KEY)")
