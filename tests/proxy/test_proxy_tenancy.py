"""Tenants stay in their policy: the profile header cannot move a mapped tenant to another profile unless its
key is granted that profile (`profiles_allowed`); otherwise a 403 with an OpenAI-shaped error."""

from __future__ import annotations

import textwrap

import httpx
import pytest
from support.upstream import ECHO

GUARD_YML = """\
version: 1
tenants: {apac: apac}
input:
  patterns:
    - {name: base_word, keywords: [zebra], action: refuse}
profiles:
  apac:
    input:
      patterns: [{name: apac_word, keywords: [kiwi], action: refuse}]
  us: {}
"""
KEYS = {
    "sk-apac": "apac",
    "sk-apac-ops": {"tenant": "apac", "profiles_allowed": ["us"]},
    "sk-other": "other",
}


@pytest.fixture
def tenancy_proxy(proxy, tmp_path):
    rails = tmp_path / "rails"
    rails.mkdir()
    (rails / "guard.yml").write_text(textwrap.dedent(GUARD_YML))
    return proxy(api_keys=KEYS, rails_enabled=True, rails_dir=rails, rails_reload=False)


def _chat(p, key: str, text: str, profile: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    if profile is not None:
        headers["x-guard-profile"] = profile
    body = {"model": ECHO, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{p.url}/v1/chat/completions", json=body, headers=headers, timeout=10)


def _blocked(resp: httpx.Response) -> bool:
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["finish_reason"] == "content_filter"


def test_mapped_tenant_cannot_escape_its_profile_by_header(tenancy_proxy) -> None:
    resp = _chat(tenancy_proxy, "sk-apac", "tell me about kiwi", profile="us")
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["type"] == "permission_error" and err["code"] == "profile_not_allowed"
    assert err["param"] == "x-guard-profile" and "'us'" in err["message"]
    assert _blocked(_chat(tenancy_proxy, "sk-apac", "tell me about kiwi"))  # its own policy still applies
    assert _blocked(_chat(tenancy_proxy, "sk-apac", "tell me about kiwi", profile="apac"))


def test_key_granted_a_profile_may_select_it_and_only_it(tenancy_proxy) -> None:
    assert not _blocked(_chat(tenancy_proxy, "sk-apac-ops", "tell me about kiwi", profile="us"))
    assert _blocked(_chat(tenancy_proxy, "sk-apac-ops", "tell me about kiwi"))
    assert _chat(tenancy_proxy, "sk-apac-ops", "hi", profile="default").status_code == 403


def test_unmapped_tenant_without_grants_keeps_choosing_by_header(tenancy_proxy) -> None:
    assert not _blocked(_chat(tenancy_proxy, "sk-other", "tell me about kiwi", profile="us"))
    assert _blocked(_chat(tenancy_proxy, "sk-other", "tell me about kiwi", profile="apac"))


def test_keys_file_grants_profiles_and_a_bad_grant_is_one_line(tmp_path) -> None:
    from guard.auth import Authenticator
    from guard.settings import Settings, SettingsError

    keys = tmp_path / "keys.yml"
    keys.write_text("sk-f: {tenant: apac, profiles_allowed: [us, eu]}\nsk-g: beta\n")
    auth = Authenticator.from_settings(Settings(home=tmp_path, api_keys_file=keys))
    assert auth.tenant("Bearer sk-f").profiles_allowed == {"us", "eu"}
    assert auth.tenant("Bearer sk-g").tenant == "beta"
    keys.write_text("sk-f: {tenant: apac, profile_allowed: [us]}\n")
    with pytest.raises(SettingsError, match=r"GUARD_API_KEYS_FILE.*profile_allowed"):
        Authenticator.from_settings(Settings(home=tmp_path, api_keys_file=keys))
