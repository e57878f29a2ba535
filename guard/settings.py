"""Typed settings: environment (`GUARD_` prefix) first, CLI flags override."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RAILS = PACKAGE_ROOT / "rails" / "configs" / "default"

DEFAULT_MODEL = "smollm2-135m-instruct"


class SettingsError(ValueError):
    """A setting is invalid; the message names it in one line."""


class KeyGrant(BaseModel):
    """What one API key may do: its tenant, and the rails profiles it may pick with the profile header beside
    the one its tenant is mapped to."""

    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(min_length=1)
    profiles_allowed: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARD_", extra="forbid", validate_default=True)

    # Server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    feedback_max_body_bytes: int = Field(16_384, ge=256)
    admin_max_body_bytes: int = Field(65_536, ge=1024)
    # Failed authentications (401) allowed per client address in the window; then 429 until it passes.
    auth_failure_limit: int = Field(20, ge=1)
    auth_failure_window_s: float = Field(60.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Working directory for models, triage artifacts, the SQLite file and the spool.
    home: Path = Path("var")

    # The model: an upstream OpenAI-compatible API, or the local transformers model when no URL is set.
    upstream_url: str | None = None
    upstream_api_key: str | None = None
    upstream_connect_timeout_s: float = Field(5.0, gt=0)
    upstream_read_timeout_s: float = Field(60.0, gt=0)
    upstream_retries: int = Field(2, ge=0, le=10)  # on connection failures only
    # Retries on an upstream 429/503 that honour its retry-after (waits up to the max); 0 passes them on at once.
    upstream_status_retries: int = Field(0, ge=0, le=5)
    upstream_status_retry_max_wait_s: float = Field(5.0, ge=0, le=60)
    upstream_max_connections: int = Field(256, ge=1)
    # The whole request, a streamed answer included: past it the client gets a 504 (or, mid-stream, an error
    # event), however steadily a slow upstream trickles bytes.
    request_timeout_s: float = Field(300.0, gt=0, le=3600)
    model: str = DEFAULT_MODEL
    local_max_new_tokens: int = Field(256, ge=1, le=8192)
    local_threads: int = Field(1, ge=1, le=256)

    # Auth: Bearer key -> tenant (or {tenant, profiles_allowed}). Keys from here and/or a YAML/JSON file.
    api_keys: dict[str, str | KeyGrant] = Field(default_factory=dict)
    api_keys_file: Path | None = None
    admin_key: str | None = None  # the reviewer "admin"
    admin_keys: dict[str, str] = Field(default_factory=dict)  # admin key -> reviewer name, one key per reviewer

    # Rails
    rails_enabled: bool = True
    rails_dir: Path = SHIPPED_RAILS
    profile_header: str = "x-guard-profile"
    rails_reload: bool = True

    # Triage classifier
    triage_enabled: bool = True
    triage_model: Path | None = None  # a built ONNX model directory; default: HOME/triage
    triage_device: Literal["auto", "cpu", "cuda"] = "auto"
    triage_threads: int = Field(1, ge=1, le=64)
    triage_max_batch: int = Field(32, ge=1, le=512)
    triage_max_wait_ms: float = Field(2.0, ge=0, le=100)
    # How often the proxy checks the triage registry's `current` pointer (a promoted version swaps in live).
    triage_poll_s: float = Field(2.0, gt=0, le=3600)
    # Instant corrections: reviewed texts override the classifier for paraphrases this close (cosine of the
    # triage embedding; see the README for the measured rate of unrelated prompts it touches).
    overrides_enabled: bool = True
    override_threshold: float = Field(0.97, ge=0.5, le=1.0)
    # How far a `false_positive` override may reach where the classifier's harm atlas shows no harmful text nearer
    # (`guard/corrections/radius.py`); without an atlas `override_threshold` holds.
    override_reach: float = Field(0.93, ge=0.5, le=1.0)
    override_refresh_s: float = Field(2.0, gt=0, le=3600)  # how often a replica polls the store for changes
    override_max_per_tenant: int = Field(10_000, ge=1, le=1_000_000)
    # Classifier work per request: at most this many windows' worth of text (512 characters each); longer
    # conversations are scored on a sample (first, last and evenly spaced windows), documents newest first.
    triage_max_windows: int = Field(16, ge=2, le=4096)
    # Batches classified at once; one request's windows hold one worker at a time, so others use the rest.
    triage_workers: int = Field(2, ge=1, le=64)

    # Records
    record_enabled: bool = True
    db_url: str | None = None
    record_sample_rate: float = Field(0.05, ge=0.0, le=1.0)
    record_queue_size: int = Field(10_000, ge=1)
    record_batch_size: int = Field(256, ge=1)
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    # A database that hangs counts as down past these (records go to the spool and are replayed later).
    db_connect_timeout_s: float = Field(5.0, gt=0, le=300)
    db_statement_timeout_s: float = Field(5.0, gt=0, le=3600)  # also the writer's deadline per database call
    db_lock_timeout_s: float = Field(2.0, gt=0, le=3600)  # Postgres lock_timeout; SQLite busy timeout
    shutdown_drain_timeout_s: float = Field(10.0, ge=0, le=600)  # then what is left goes to the spool
    pii_masking: bool = True
    # Clean exchanges not sampled stay claimable by feedback this long (in Redis when set, else in-process).
    recent_ttl_s: int = Field(900, ge=1, le=7 * 86400)

    # Shared state of a fleet: rate-limit counters and recently served exchanges. Unset = this process only.
    redis_url: str | None = None
    # Rate limits and quotas in `limits` notation ("20/second;100000/day"); tokens come from upstream usage.
    limit_key_requests: str | None = None
    limit_key_tokens: str | None = None
    limit_tenant_requests: str | None = None
    limit_tenant_tokens: str | None = None
    # Per-tenant metrics label: the first N tenants seen get their own series, the rest count as "other".
    metrics_tenants: int = Field(20, ge=0, le=1000)

    # Development data (public data sets beside the repo); optional.
    datasets_dir: Path = PACKAGE_ROOT.parent / "shared" / "datasets"

    @field_validator("upstream_url")
    @classmethod
    def _url_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/") if v else v

    @field_validator("limit_key_requests", "limit_key_tokens", "limit_tenant_requests", "limit_tenant_tokens")
    @classmethod
    def _limits(cls, v: str | None) -> str | None:
        if not v:
            return None
        from limits import parse_many

        try:
            parse_many(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a rate limit: use e.g. '20/second' or '100/minute;10000/day'") from None
        return v

    @field_validator("admin_keys")
    @classmethod
    def _reviewers(cls, v: dict[str, str]) -> dict[str, str]:
        for key, reviewer in v.items():
            if not key.strip() or not reviewer.strip() or len(reviewer) > 128:
                raise ValueError("each entry maps a non-empty admin key to a reviewer name of 1 to 128 characters")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v or None

    # Derived locations -------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.home / "models"

    @property
    def triage_dir(self) -> Path:
        return self.triage_model or self.home / "triage"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.home / 'guard.db').as_posix()}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def load_settings(**overrides: object) -> Settings:
    """Build settings from env plus overrides; turn validation errors into one clear line."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except SourceError as exc:  # a dict/list setting whose environment value is not JSON
        m = re.search(r'field "(\w+)"', str(exc))
        name = m.group(1).upper() if m else "?"
        example = '{"sk-key": "tenant"}'
        raise SettingsError(f"invalid setting GUARD_{name}: not valid JSON (e.g. '{example}')") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        raise SettingsError(f"invalid setting GUARD_{name.upper()}: {msg}") from None
