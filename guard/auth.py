"""API keys -> tenants. Keys come from settings and/or a YAML/JSON keys file of {key: tenant} or
{key: {tenant: ..., profiles_allowed: [...]}}."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from guard.errors import Unauthorized
from guard.settings import KeyGrant, Settings, SettingsError

ANONYMOUS_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    key_hash: str | None
    profiles_allowed: frozenset[str] = frozenset()


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _grant(key: str, value: object, source: str) -> KeyGrant:
    if isinstance(value, str):
        return KeyGrant(tenant=value)
    if isinstance(value, KeyGrant):
        return value
    try:
        return KeyGrant.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "value"
        raise SettingsError(f"invalid setting {source}: key ending '…{key[-4:]}': {where}: {err['msg']}") from None


def load_keys(settings: Settings) -> dict[str, KeyGrant]:
    keys = {k: _grant(k, v, "GUARD_API_KEYS") for k, v in settings.api_keys.items()}
    path: Path | None = settings.api_keys_file
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise SettingsError(f"invalid setting GUARD_API_KEYS_FILE: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"invalid setting GUARD_API_KEYS_FILE: {path} is not YAML/JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise SettingsError(f"invalid setting GUARD_API_KEYS_FILE: {path} must map each key to a tenant name")
        keys.update({k: _grant(k, v, f"GUARD_API_KEYS_FILE ({path})") for k, v in data.items()})
    return keys


class Authenticator:
    """Bearer key check. With no keys configured the proxy is open, which is allowed on loopback only.

    Keys are looked up by their SHA-256 digest and then compared with `hmac.compare_digest`: the time a
    guess takes tells nothing about how much of it matched a real key."""

    def __init__(
        self, keys: dict[str, str | KeyGrant] | dict[str, str] | dict[str, KeyGrant], admin_key: str | None
    ) -> None:
        self._keys: dict[bytes, tuple[str, Principal]] = {}
        for key, value in keys.items():
            grant = _grant(key, value, "GUARD_API_KEYS")
            principal = Principal(grant.tenant, key_hash(key), frozenset(grant.profiles_allowed))
            self._keys[_digest(key)] = (key, principal)
        self._admin_key = admin_key

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        keys = load_keys(settings)
        if not keys and not settings.is_loopback:
            raise SettingsError(
                f"refusing to listen on {settings.host} without API keys: set GUARD_API_KEYS or GUARD_API_KEYS_FILE"
            )
        return cls(keys, settings.admin_key)

    @property
    def tenants(self) -> list[str]:
        """Tenant names in configuration order (anonymous when open)."""
        return list(dict.fromkeys(p.tenant for _, p in self._keys.values())) if self._keys else [ANONYMOUS_TENANT]

    @property
    def open(self) -> bool:
        return not self._keys

    def tenant(self, authorization: str | None) -> Principal:
        if self.open:
            return Principal(ANONYMOUS_TENANT, None)
        key = _bearer(authorization)
        entry = self._keys.get(_digest(key)) if key else None
        if entry is None or not hmac.compare_digest(entry[0].encode(), key.encode()):  # type: ignore[union-attr]
            raise Unauthorized("invalid or missing API key (send 'Authorization: Bearer <key>')")
        return entry[1]

    def admin(self, authorization: str | None) -> None:
        key = _bearer(authorization)
        if not self._admin_key or not key or not hmac.compare_digest(key.encode(), self._admin_key.encode()):
            raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin key>' (GUARD_ADMIN_KEY)")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
