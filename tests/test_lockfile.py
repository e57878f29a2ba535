"""requirements.lock pins every dependency of every extra; `make` installs from it; torch stays the CPU wheel."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, the packages that pulled it in)."""
    out: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in LOCK.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line):
            name = canonicalize_name(m.group(1).split("[")[0])
            out[name] = (m.group(2), [])
        elif name and (via := re.match(r"^\s+#\s+(?:via\s+)?([\w.\-]+)", line)) and via.group(1) != "via":
            out[name][1].append(canonicalize_name(via.group(1)))
    return out


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_declared_dependency_is_pinned_in_the_lock() -> None:
    pins = locked()
    missing = sorted({r.name for r in project_requirements() if canonicalize_name(r.name) not in pins})
    assert missing == [], "run `make lock`"
    for req in project_requirements():
        version, _ = pins[canonicalize_name(req.name)]
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} is outside {req.specifier}"


def test_torch_is_the_cpu_wheel_and_brings_no_cuda_packages() -> None:
    pins = locked()
    assert pins["torch"][0] == "2.13.0+cpu"
    assert "triton" not in pins
    cuda = {name: via for name, (_, via) in pins.items() if name.startswith("nvidia-")}
    # CUDA libraries only for the GPU triage variant's onnxruntime-gpu, never for torch.
    assert all(via and all(v == "onnxruntime-gpu" or v in cuda for v in via) for via in cuda.values()), cuda


def test_installed_packages_match_the_lock() -> None:
    drift = []
    for name, (version, _) in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an extra this environment does not install (gpu)
        if installed != version:
            drift.append(f"{name}: installed {installed}, locked {version}")
    assert drift == [], "the environment drifted from requirements.lock (`make install` installs from it)"


def test_makefile_installs_from_the_lock_with_torch_first() -> None:
    text = (ROOT / "Makefile").read_text()
    torch_at = text.index("pip install -q torch==2.13.0")
    project_at = text.index("pip install -q -c requirements.lock -e")
    assert torch_at < project_at
