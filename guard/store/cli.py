"""`guard db ...`: migrations, retention, export. Light at import time (typer, stdlib only)."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(no_args_is_help=True, help="Exchange store: migrate, prune, export.")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

UrlOption = Annotated[str | None, typer.Option("--url", help="Database URL (default: GUARD_DB_URL or var/guard.db).")]


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '2w', '90m', '45s'."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"bad duration {text!r}: use a number and one of s, m, h, d, w (e.g. 30d)")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def _url(url: str | None) -> str:
    from guard.cli import fail
    from guard.settings import SettingsError, load_settings

    if url:
        return url
    try:
        return load_settings().database_url
    except SettingsError as exc:
        raise fail(str(exc)) from None


def _engine(url: str | None) -> Engine:
    from guard.cli import fail
    from guard.store.db import make_engine

    try:
        return make_engine(_url(url))
    except Exception as exc:  # bad URL or missing driver
        raise fail(f"cannot open database: {exc}") from None


def db_error(action: str, engine: Engine, exc: Exception) -> str:
    """One line: an unreachable server named by host and port (password masked), else the driver's first line."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    if isinstance(exc, OperationalError | InterfaceError) and engine.url.host:
        where = f"{engine.url.host}:{engine.url.port or 5432}"
        shown = engine.url.render_as_string(hide_password=True)
        return f"{action}: cannot reach the database at {where} ({shown}): {reason.split(': ')[-1]}"
    return f"{action}: {reason}"


@app.command()
def upgrade(url: UrlOption = None) -> None:
    """Create or migrate the schema to the newest version."""
    from sqlalchemy.exc import SQLAlchemyError

    from guard.cli import fail
    from guard.store.db import current_revision
    from guard.store.db import upgrade as do_upgrade

    engine = _engine(url)
    try:
        do_upgrade(engine)
        typer.echo(f"database at revision {current_revision(engine)}")
    except SQLAlchemyError as exc:
        raise fail(db_error("migration failed", engine, exc)) from None
    finally:
        engine.dispose()


@app.command()
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Delete exchanges older than this (30d, 12h).")],
    url: UrlOption = None,
) -> None:
    """Delete old exchanges with their flags, reviews and feedback (retention)."""
    from sqlalchemy.exc import SQLAlchemyError

    from guard.cli import fail
    from guard.store.db import prune as do_prune

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise fail(str(exc)) from None
    engine = _engine(url)
    try:
        n = do_prune(engine, age)
    except SQLAlchemyError as exc:
        raise fail(db_error("prune failed", engine, exc)) from None
    finally:
        engine.dispose()
    typer.echo(f"deleted {n} exchanges older than {older_than}")


@app.command()
def export(
    flag: Annotated[list[str] | None, typer.Option(help="Only exchanges with this flag (repeatable).")] = None,
    since: Annotated[str | None, typer.Option(help="Only the last DURATION (e.g. 7d).")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    url: UrlOption = None,
) -> None:
    """Write matching records as JSON lines to stdout."""
    from guard.cli import fail
    from guard.store.query import iter_records

    try:
        start = datetime.now(UTC) - parse_duration(since) if since else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    engine = _engine(url)
    try:
        for rec in iter_records(engine, since=start, flags=set(flag) if flag else None, tenant=tenant):
            sys.stdout.write(rec.model_dump_json() + "\n")
    finally:
        engine.dispose()
