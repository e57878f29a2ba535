from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def rails_dir(tmp_path: Path) -> Path:
    """The shipped default rails plus an output pattern rail (a deterministic stream cut-off) and an input pattern
    with a safe-completion instruction."""
    from guard.settings import SHIPPED_RAILS

    target = tmp_path / "rails"
    shutil.copytree(SHIPPED_RAILS, target)
    policy = (target / "guard.yml").read_text()
    policy = policy.replace(
        "  patterns:\n",
        '  patterns:\n    - {name: zebra_fact, action: safe_complete, regex: ["about the zebra"], '
        'instruction: "Keep it to one sentence."}\n',
        1,
    )
    policy = policy.replace(
        "output:\n",
        'output:\n  patterns:\n    - {name: recipe_leak, action: refuse, regex: ["nerve agent synthesis"]}\n',
        1,
    )
    (target / "guard.yml").write_text(policy)
    return target
