"""Every Prometheus metric the proxy exports. `guard_` prefix, base units, bounded labels.

Metrics live in the default registry so that `prometheus_client`'s multiprocess mode works unchanged
when PROMETHEUS_MULTIPROC_DIR is set (several uvicorn workers).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

M = TypeVar("M", Counter, Gauge, Histogram)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

# Requests ------------------------------------------------------------------------------------------
REQUESTS = Counter("guard_requests_total", "HTTP requests by route and outcome", ["route", "outcome"])
REQUEST_LATENCY = Histogram(
    "guard_request_duration_seconds",
    "Whole-request latency, every outcome (errors and refusals too)",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "guard_requests_in_flight",
    "Chat requests being served now (streams until their last byte)",
    multiprocess_mode="livesum",
)
# `tenant` is bounded: the first GUARD_METRICS_TENANTS tenants of the keys configuration, the rest "other".
TENANT_REQUESTS = Counter("guard_tenant_requests_total", "Chat requests per tenant and outcome", ["tenant", "outcome"])
TOKENS = Counter(
    "guard_tokens_total", "Tokens by direction (prompt, completion), from the model's usage", ["direction"]
)

# Limits ----------------------------------------------------------------------------------------------
RATE_LIMITED = Counter(
    "guard_rate_limited_total", "Requests refused with 429, by limit scope and kind", ["scope", "kind"]
)
RATE_LIMIT_BACKEND_ERRORS = Counter(
    "guard_rate_limit_backend_errors_total", "Limit checks that failed (Redis unreachable); the request was let through"
)
RECENT_STORE_ERRORS = Counter(
    "guard_recent_store_errors_total", "Failures to keep or look up a recently served exchange (Redis unreachable)"
)

# Upstream / model --------------------------------------------------------------------------------
UPSTREAM_LATENCY = Histogram(
    "guard_upstream_duration_seconds", "Model call latency (full answer)", ["backend"], buckets=_LATENCY_BUCKETS
)


@functools.cache
def child(metric: M, *labels: str) -> M:
    """`metric.labels(*labels)`, looked up once: `labels()` takes a lock and builds a key on every call, and the
    request path counts several times per request. Bounded like the labels themselves."""
    return metric.labels(*labels)


TIME_TO_FIRST_TOKEN = Histogram(
    "guard_time_to_first_token_seconds",
    "Streaming: time until the first content reaches the client",
    ["backend"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter("guard_upstream_errors_total", "Model call failures by kind", ["backend", "kind"])

AUTH_THROTTLED = Counter("guard_auth_throttled_total", "Requests refused (429) after too many failed authentications")

# Triage ------------------------------------------------------------------------------------------
TRIAGE_LATENCY = Histogram(
    "guard_triage_duration_seconds", "Classifier latency per batch", ["device"], buckets=_FAST_BUCKETS
)
TRIAGE_BATCH_SIZE = Histogram(
    "guard_triage_batch_size", "Texts per classifier batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
TRIAGE_SAMPLED = Counter(
    "guard_triage_sampled_total",
    "Requests over the classifier's window budget, scored on a sample of their text (GUARD_TRIAGE_MAX_WINDOWS)",
)
TRIAGE_SWAPS = Counter(
    "guard_triage_swaps_total",
    "Moves of the triage registry's current pointer acted on: ok (now serving it) or failed (old version kept)",
    ["outcome"],
)
TRIAGE_PREDICTIONS = Counter("guard_triage_predictions_total", "Labels predicted over threshold", ["label"])
TRIAGE_DEVICE = Gauge(
    "guard_triage_device_info", "Execution provider of the classifier", ["device"], multiprocess_mode="max"
)

# Instant corrections: reviews overriding the classifier (label: false_positive, unsafe, correct).
REVIEW_OVERRIDES = Counter(
    "guard_review_overrides_total", "Requests whose triage result a reviewed close paraphrase overrode", ["label"]
)
# Every replica loads the same overrides from the store: the max is the fleet's count.
REVIEW_OVERRIDES_ACTIVE = Gauge(
    "guard_review_overrides_active", "Active overrides loaded by this process", multiprocess_mode="livemax"
)

# Rails -------------------------------------------------------------------------------------------
RAIL_EVALUATIONS = Counter("guard_rail_evaluations_total", "Rail decisions", ["rail", "stage", "result", "mode"])
RAIL_LATENCY = Histogram("guard_rail_duration_seconds", "Rail evaluation time", ["stage"], buckets=_FAST_BUCKETS)
REFUSALS = Counter("guard_refusals_total", "Refusals by kind (policy, model, over_refusal)", ["kind"])
# NeMo stage: per rail (flow names come from the loaded config, so the label set is bounded by it) and per
# task prompt sent to a model (NeMo's task names).
NEMO_RAIL_LATENCY = Histogram(
    "guard_nemo_rail_duration_seconds",
    "NeMo rail (flow) time, model calls included",
    ["rail", "stage"],
    buckets=_LATENCY_BUCKETS,
)
NEMO_TASK_LATENCY = Histogram(
    "guard_nemo_task_duration_seconds",
    "NeMo task prompts answered by a model",
    ["task", "result"],
    buckets=_LATENCY_BUCKETS,
)
CONFIG_RELOADS = Counter("guard_config_reloads_total", "Rails config reloads by result", ["result"])

# Records -----------------------------------------------------------------------------------------
EXCHANGES_LOGGED = Counter("guard_exchanges_logged_total", "Exchanges written to storage, by flag", ["flag"])
RECORD_QUEUE_DEPTH = Gauge("guard_record_queue_depth", "Records waiting for the writer", multiprocess_mode="livesum")
# Workers share one spool directory and each reports its total, so the max is the true size.
SPOOL_BYTES = Gauge(
    "guard_record_spool_bytes", "Size of the local spool of unwritten records", multiprocess_mode="livemax"
)
RECORD_WRITE_FAILURES = Counter("guard_record_write_failures_total", "Failed database writes (batches)")
RECORD_STORE_UP = Gauge(
    "guard_record_store_up",
    "1 while records reach the database, 0 while they go to the spool",
    multiprocess_mode="livemin",
)
RECORDS_DROPPED = Counter("guard_records_dropped_total", "Records lost because queue and spool were full")

# Build ---------------------------------------------------------------------------------------------
# "mostrecent": after a reload every worker sets its old series to 0, which must win over the 1 it wrote before
# (a worker's multiprocess file keeps every series it ever set; `clear()` does not reach the file).
BUILD_INFO = Gauge(
    "guard_build_info",
    "Version, served model version and rails config hash",
    ["version", "model_version", "rails_hash"],
    multiprocess_mode="mostrecent",
)
_LIVE_BUILD: list[tuple[str, str, str]] = []  # the labels this process last set to 1


class TenantLabels:
    """The bounded `tenant` label: the first `top` tenants of the keys configuration (list the biggest first),
    everyone else "other". The same on every replica, since it comes from configuration, not from traffic."""

    def __init__(self, tenants: Iterable[str], top: int) -> None:
        self._named: frozenset[str] = frozenset(list(dict.fromkeys(tenants))[:top])

    def __call__(self, tenant: str) -> str:
        return tenant if tenant in self._named else "other"


def render() -> tuple[bytes, str]:
    """The exposition text; aggregates all workers' files in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def set_build_info(version: str, model_version: str | None, rails_hash: str | None) -> None:
    labels = (version, model_version or "none", rails_hash or "none")
    for old in _LIVE_BUILD:
        if old == labels:
            continue
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            BUILD_INFO.labels(*old).set(0)
        else:
            BUILD_INFO.remove(*old)
    _LIVE_BUILD[:] = [labels]
    BUILD_INFO.labels(*labels).set(1)
