"""Waiting for an exchange's record: the proxy writes records in the background, after the response."""

from __future__ import annotations

import time
from typing import Any


def wait_for_record(proxy: Any, exchange_id: str, timeout_s: float = 10.0) -> Any:
    """The stored record of `exchange_id` (an `ExchangeRecord`), polled until it appears."""
    from guard.store.query import fetch_record

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = fetch_record(proxy.resources.store_engine, exchange_id)
        if record is not None:
            return record
        time.sleep(0.05)
    raise AssertionError(f"exchange {exchange_id} was not recorded within {timeout_s}s")
