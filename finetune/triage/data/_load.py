"""The generator's data (slot values, templates, frames, documents) lives in YAML beside the module that draws it.

`lexicon.yml` holds what `lexicon.py` draws from, keyed by the names the module exports; the Python keeps only the
drawing and filling logic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent


def load(module: str) -> dict[str, Any]:
    """The contents of `module`.yml in this folder."""
    with (HERE / f"{module}.yml").open(encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    return data
