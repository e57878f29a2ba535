"""Shared resources the admin and feedback routes read from `app.state`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import Engine

from guard.errors import NotReady, Unauthorized


def store_engine(request: Request) -> Engine:
    """`app.state.store_engine`, or the `store_engine` of `app.state.resources`."""
    state = request.app.state
    engine = getattr(state, "store_engine", None) or getattr(getattr(state, "resources", None), "store_engine", None)
    if engine is None:
        raise NotReady("record storage is not available")
    return engine


def recorder(request: Request) -> Any:
    """The app's record writer, when it is one (it can vouch for exchanges not yet written)."""
    state = request.app.state
    rec = getattr(state, "recorder", None)
    if rec is None:
        pipeline = getattr(getattr(state, "resources", None), "pipeline", None)
        rec = getattr(pipeline, "recorder", None)
    return rec if hasattr(rec, "claim") else None


def tenant(request: Request) -> str:
    """The caller's tenant, from the app's authenticator (or `request.state.tenant` set by middleware)."""
    auth = getattr(getattr(request.app.state, "resources", None), "auth", None)
    if auth is not None:
        return auth.tenant(request.headers.get("authorization")).tenant
    name = getattr(request.state, "tenant", None)
    if name is None:
        raise Unauthorized("invalid or missing API key (send 'Authorization: Bearer <key>')")
    return name
