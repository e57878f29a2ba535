"""Which built triage model serves: the triage registry's current version, else the `guard triage build` output.

Triage versions live in the model registry beside the LLM's (`GUARD_HOME/models/triage/VERSION/`, the same atomic
`current` pointer and `history.json`; `finetune/triage/versions.py` adds and promotes them). Before anything is
promoted there is no pointer and the shipped build (`GUARD_HOME/triage`) is the implicit first version, so a fresh
install serves exactly what `guard triage build` wrote. An explicit GUARD_TRIAGE_MODEL pins that folder: no
registry, no hot swap. Light: stdlib only, imported on the serving path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from guard.modelstore import ModelStore

if TYPE_CHECKING:
    from guard.settings import Settings

NAME = "triage"


def triage_store(settings: Settings) -> ModelStore | None:
    """The registry the served triage model follows; None when GUARD_TRIAGE_MODEL pins a folder."""
    return None if settings.triage_model is not None else ModelStore(settings.model_dir)


def serving_dir(settings: Settings) -> Path:
    store = triage_store(settings)
    current = store.current(NAME) if store is not None else None
    return current.path if current is not None else settings.triage_dir
