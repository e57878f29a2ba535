"""Admin authentication: `Authorization: Bearer <admin key>` for API clients, or a session cookie for the
review page. Each reviewer has a key of their own (GUARD_ADMIN_KEYS: key -> reviewer name; GUARD_ADMIN_KEY is the
reviewer "admin"), so every review names who made it. The cookie never holds a key: it holds the reviewer, an
expiry and an HMAC of both keyed by that reviewer's key (changing the key logs the reviewer's browsers out).
SameSite=Strict plus an Origin check keep other sites from posting reviews with it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlsplit

from fastapi import Request

from guard.errors import Forbidden, Unauthorized

COOKIE = "guard_admin"
SESSION_S = 12 * 3600
DEFAULT_REVIEWER = "admin"  # the reviewer behind the single GUARD_ADMIN_KEY


def admin_keys(request: Request) -> dict[str, str]:
    """Admin key -> reviewer name, from GUARD_ADMIN_KEYS and GUARD_ADMIN_KEY."""
    settings = getattr(request.app.state, "settings", None)
    keys = dict(getattr(settings, "admin_keys", None) or {})
    single = getattr(settings, "admin_key", None)
    if single:
        keys.setdefault(single, DEFAULT_REVIEWER)
    return keys


def reviewer_for_key(request: Request, given: str) -> str | None:
    """The reviewer whose key this is (compared in constant time against every key), or None."""
    found = None
    for key, name in admin_keys(request).items():
        if hmac.compare_digest(given.encode(), key.encode()):
            found = name
    return found


def _keys_of(request: Request, reviewer: str) -> list[str]:
    return [k for k, name in admin_keys(request).items() if name == reviewer]


def session_token(key: str, reviewer: str, expires: int) -> str:
    who = base64.urlsafe_b64encode(reviewer.encode()).decode().rstrip("=")
    mac = hmac.new(key.encode(), f"guard-admin-session:{who}:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{who}.{mac}"


def new_session(key: str, reviewer: str) -> str:
    return session_token(key, reviewer, int(time.time()) + SESSION_S)


def _session_reviewer(request: Request, token: str | None) -> str | None:
    parts = (token or "").split(".")
    if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) < time.time():
        return None
    try:
        reviewer = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    given = (token or "").encode()
    ok = [
        hmac.compare_digest(given, session_token(k, reviewer, int(parts[0])).encode())
        for k in _keys_of(request, reviewer)
    ]
    return reviewer if any(ok) else None


def _bearer(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def signed_in(request: Request) -> str | None:
    """The reviewer making this request (bearer key or session cookie), or None."""
    if not admin_keys(request):
        return None
    bearer = _bearer(request.headers.get("authorization"))
    if bearer is not None:
        who = reviewer_for_key(request, bearer)
        if who is not None:
            return who
    who = _session_reviewer(request, request.cookies.get(COOKIE))
    if who is not None:
        _same_origin(request)
    return who


def _same_origin(request: Request) -> None:
    """Cookie-authenticated writes must come from this site's own pages."""
    if request.method in ("GET", "HEAD"):
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("cross-site request refused")


def require_admin(request: Request) -> str:
    """FastAPI dependency for the admin API: the reviewer's name."""
    if not admin_keys(request):
        raise Unauthorized("the admin API is disabled: set GUARD_ADMIN_KEYS or GUARD_ADMIN_KEY")
    who = signed_in(request)
    if who is None:
        raise Unauthorized(
            "admin endpoints need 'Authorization: Bearer <admin key>' (GUARD_ADMIN_KEYS or GUARD_ADMIN_KEY)"
        )
    return who
