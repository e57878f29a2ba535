"""API keys -> tenants. Keys come from settings and/or a YAML/JSON keys file of {key: tenant}."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import yaml

from guard.errors import Unauthorized
from guard.settings import Settings, SettingsError

ANONYMOUS_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    key_hash: str | None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def load_keys(settings: Settings) -> dict[str, str]:
    keys = dict(settings.api_keys)
    path: Path | None = settings.api_keys_file
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise SettingsError(f"invalid setting GUARD_API_KEYS_FILE: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"invalid setting GUARD_API_KEYS_FILE: {path} is not YAML/JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise SettingsError(f"invalid setting GUARD_API_KEYS_FILE: {path} must map each key to a tenant name")
        keys.update(data)
    return keys


class Authenticator:
    """Bearer key check. With no keys configured the proxy is open, which is allowed on loopback only."""

    def __init__(self, keys: dict[str, str], admin_key: str | None) -> None:
        self._keys = keys
        self._hashes = {k: key_hash(k) for k in keys}
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
        return list(dict.fromkeys(self._keys.values())) if self._keys else [ANONYMOUS_TENANT]

    @property
    def open(self) -> bool:
        return not self._keys

    def tenant(self, authorization: str | None) -> Principal:
        if self.open:
            return Principal(ANONYMOUS_TENANT, None)
        key = _bearer(authorization)
        tenant = self._keys.get(key) if key else None
        if tenant is None:
            raise Unauthorized("invalid or missing API key (send 'Authorization: Bearer <key>')")
        return Principal(tenant, self._hashes[key])  # type: ignore[index]

    def admin(self, authorization: str | None) -> None:
        key = _bearer(authorization)
        if not self._admin_key or not key or not hmac.compare_digest(key, self._admin_key):
            raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin key>' (GUARD_ADMIN_KEY)")


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
