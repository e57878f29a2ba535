"""The Redis connection a fleet shares (rate limits use their own pool, from the same URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from guard.settings import SettingsError


def describe(url: str) -> str:
    """host:port, never the password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}" if parts.scheme != "unix" else parts.path


def ping(url: str, timeout_s: float = 3.0) -> None:
    """Startup check (synchronous, before the port is bound): one line naming the server when it fails."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SettingsError(
            f"invalid setting GUARD_REDIS_URL: cannot reach Redis at {describe(url)}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        client.close()


@asynccontextmanager
async def open_redis(url: str, timeout_s: float = 1.0) -> AsyncIterator[Any]:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, health_check_interval=30
    )
    try:
        try:
            await client.ping()  # type: ignore[misc]
        except aredis.RedisError as exc:
            raise SettingsError(
                f"invalid setting GUARD_REDIS_URL: cannot reach Redis at {describe(url)}: {str(exc).splitlines()[0]}"
            ) from None
        yield client
    finally:
        await client.aclose()
