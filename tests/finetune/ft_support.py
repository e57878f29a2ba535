"""Helpers for the tuning-loop tests: exchange records, an isolated Postgres schema, a bag-of-words encoder."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from guard.records import ExchangeRecord, Message

PG_HOST = os.environ.get("GUARD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("GUARD_TEST_PG_PORT", "5432"))
T0 = datetime(2026, 3, 1, tzinfo=UTC)
REFUSAL = "I'm sorry, but I can't help with that."
MODEL = "tiny-chat"


def record(
    prompt: str,
    answer: str,
    flags: tuple[str, ...] = (),
    *,
    minutes: int = 0,
    model_response: str = "",
    profile: str | None = None,
    labels: tuple[str, ...] = (),
    model: str = MODEL,
    instruction: str | None = None,
) -> ExchangeRecord:
    """`instruction`: the input rails sent the model the prompt under this system instruction."""
    sent = [Message(role="system", content=instruction), Message(role="user", content=prompt)] if instruction else None
    return ExchangeRecord(
        exchange_id=f"chatcmpl-{uuid.uuid4().hex}",
        tenant="acme",
        profile=profile,
        created_at=T0 + timedelta(minutes=minutes),
        model=model,
        model_version="base",
        messages=[Message(role="user", content=prompt)],
        model_messages=sent,
        response=answer,
        model_response=model_response,
        triage_labels=list(labels),
        flags=sorted(flags),
    )


def pg_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    """A fresh Postgres schema (isolated from other tests' tables), dropped afterwards."""
    import psycopg

    schema = f"gt_ft_{uuid.uuid4().hex[:12]}"
    dsn = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def bow_embed(texts: list[str]) -> np.ndarray:
    """Hashed bag of words, L2-normalised: near-identical prompts get cosine close to 1."""
    out = np.zeros((len(texts), 256), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z0-9]+", t.lower()):
            out[i, hash(w) % 256] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
