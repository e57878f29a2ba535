"""Tenants stay in their policy: which rails profile a request may pick with the profile header.

A tenant mapped to a profile in `guard.yml` (`tenants:`) runs under it; the header may name another profile
only when the request's API key is granted it (`profiles_allowed`). A key with grants is held to them (and to
its tenant's own profile) whatever its tenant. Anything else is a 403: the header must not be a way out of
the policy the operator assigned.
"""

from __future__ import annotations

from typing import Any

from guard.auth import Principal
from guard.errors import Forbidden


class ProfileNotAllowed(Forbidden):
    code = "profile_not_allowed"


def requested_profile(rails: Any, principal: Principal, header_value: str | None, header_name: str) -> str | None:
    """The header's profile when this principal may use it (None when no header was sent); else 403."""
    if header_value is None or header_value in principal.profiles_allowed:
        return header_value
    lookup = getattr(rails, "tenant_profile", None)
    own = lookup(principal.tenant) if lookup is not None else None
    if header_value == own or (own is None and not principal.profiles_allowed):
        return header_value
    raise ProfileNotAllowed(
        f"this API key may not select rails profile {header_value!r} with {header_name}", param=header_name
    )
