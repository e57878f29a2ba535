"""Query-string filters shared by the admin API, the export and the review page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from guard.errors import InvalidRequest
from guard.records import FLAGS

MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    flags: frozenset[str] | None = None
    tenant: str | None = None
    profile: str | None = None
    model: str | None = None
    reviewed: bool | None = None
    flagged: bool | None = None
    rail: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "flags": set(self.flags) if self.flags else None,
            "tenant": self.tenant,
            "profile": self.profile,
            "model": self.model,
            "reviewed": self.reviewed,
            "flagged": self.flagged,
            "rail": self.rail,
        }


def _time(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # In UTC here, not in the query: a time at the edge of the calendar overflows when shifted.
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"'{name}' must be an ISO 8601 time from year 1 to 9999, e.g. 2026-01-31T12:00:00Z", param=name
        ) from None


def _bool(name: str, value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise InvalidRequest(f"'{name}' must be true or false", param=name)


def parse_filters(request: Request) -> Filters:
    q = request.query_params
    flags = [f for f in q.getlist("flag") if f]
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise InvalidRequest(f"unknown flag {unknown[0]!r}; flags: {', '.join(FLAGS)}", param="flag")
    return Filters(
        since=_time("since", q.get("since")),
        until=_time("until", q.get("until")),
        flags=frozenset(flags) or None,
        tenant=q.get("tenant") or None,
        profile=q.get("profile") or None,
        model=q.get("model") or None,
        reviewed=_bool("reviewed", q.get("reviewed")),
        flagged=_bool("flagged", q.get("flagged")),
        rail=q.get("rail") or None,
    )


def parse_limit(request: Request, default: int | None) -> int | None:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    # isdigit() alone accepts '²' and other Unicode digits that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(raw)


def parse_offset(request: Request) -> int:
    raw = request.query_params.get("offset")
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 10**9:
        raise InvalidRequest("'offset' must be a non-negative integer", param="offset")
    return int(raw)
