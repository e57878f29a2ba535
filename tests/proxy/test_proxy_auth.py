"""Bearer keys map to tenants; an open proxy is allowed on loopback only."""

from __future__ import annotations

import httpx
import openai
import pytest
from support.upstream import ECHO

from guard.server import preflight
from guard.settings import Settings, SettingsError

KEYS = {"sk-alpha": "alpha", "sk-beta": "beta"}
UPSTREAM_ONLY = {"upstream_url": "http://127.0.0.1:9/v1", "triage_enabled": False, "rails_enabled": False}
BODY = {"model": ECHO, "messages": [{"role": "user", "content": "hi"}]}


def post(url: str, key: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", json=BODY, headers=headers, timeout=10)


@pytest.mark.parametrize("key", [None, "sk-wrong", ""])
def test_missing_or_wrong_key_is_401(proxy, key: str | None) -> None:
    resp = post(proxy(api_keys=KEYS).url, key)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert resp.json()["error"]["code"] == "invalid_api_key"


def test_non_bearer_scheme_is_401(proxy) -> None:
    p = proxy(api_keys=KEYS)
    resp = httpx.post(f"{p.url}/v1/chat/completions", json=BODY, headers={"authorization": "Basic sk-alpha"})
    assert resp.status_code == 401


def test_models_listing_needs_a_key_too(proxy) -> None:
    p = proxy(api_keys=KEYS)
    assert httpx.get(f"{p.url}/v1/models").status_code == 401
    assert httpx.get(f"{p.url}/v1/models", headers={"authorization": "Bearer sk-beta"}).status_code == 200


def test_right_key_is_answered_and_openai_client_sends_it(proxy) -> None:
    p = proxy(api_keys=KEYS)
    assert post(p.url, "sk-alpha").status_code == 200
    client = openai.OpenAI(base_url=p.v1, api_key="sk-beta", max_retries=0)
    assert client.chat.completions.create(**BODY).choices[0].message.content == "echo: hi"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=p.v1, api_key="sk-nope", max_retries=0).chat.completions.create(**BODY)


def test_keys_map_to_tenants_from_settings_and_keys_file(proxy, tmp_path) -> None:
    from guard.pipeline import Exchange

    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("sk-file: gamma\n")
    p = proxy(api_keys=KEYS, api_keys_file=keys_file)
    seen: list[Exchange] = []

    class Collect:
        def record(self, exchange: Exchange) -> None:
            seen.append(exchange)

    p.resources.pipeline.recorder = Collect()
    for key in ("sk-alpha", "sk-beta", "sk-file"):
        assert post(p.url, key).status_code == 200
    assert [e.tenant for e in seen] == ["alpha", "beta", "gamma"]
    assert len({e.api_key_hash for e in seen}) == 3
    assert all(e.api_key_hash and "sk-" not in e.api_key_hash for e in seen)  # never the key itself


def test_open_proxy_uses_default_tenant(proxy) -> None:
    from guard.auth import ANONYMOUS_TENANT

    p = proxy()
    seen: list[str] = []

    class Collect:
        def record(self, exchange) -> None:
            seen.append(exchange.tenant)

    p.resources.pipeline.recorder = Collect()
    assert post(p.url, None).status_code == 200
    assert seen == [ANONYMOUS_TENANT]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_refuses_to_start_on_public_address_without_keys(tmp_path, host: str) -> None:
    settings = Settings(home=tmp_path, host=host, **UPSTREAM_ONLY)
    with pytest.raises(SettingsError, match="GUARD_API_KEYS"):
        preflight(settings)


def test_public_address_with_keys_passes_preflight(tmp_path) -> None:
    preflight(Settings(home=tmp_path, host="0.0.0.0", api_keys=KEYS, **UPSTREAM_ONLY))


def test_loopback_without_keys_passes_preflight(tmp_path) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        preflight(Settings(home=tmp_path, host=host, **UPSTREAM_ONLY))


def test_unreadable_keys_file_is_a_settings_error(tmp_path) -> None:
    settings = Settings(home=tmp_path, api_keys_file=tmp_path / "missing", **UPSTREAM_ONLY)
    with pytest.raises(SettingsError, match="GUARD_API_KEYS_FILE"):
        preflight(settings)
