"""`guard serve`: check what would make startup fail, then run uvicorn (one or several workers)."""

from __future__ import annotations

import os
import shutil

import uvicorn
from fastapi import FastAPI

from guard.app import create_app
from guard.auth import Authenticator
from guard.modelstore import ModelStore, ModelStoreError
from guard.settings import Settings, SettingsError

_SETTINGS_ENV = "GUARDTUNE_SETTINGS_JSON"  # hands resolved settings to worker processes


def preflight(settings: Settings) -> None:
    """Fail before binding the port, with one line naming what is wrong."""
    Authenticator.from_settings(settings)
    if not settings.upstream_url:
        try:
            if ModelStore(settings.model_dir).current(settings.model) is None:
                raise SettingsError(
                    f"no local model {settings.model!r} in {settings.model_dir}: run `guard models prepare` "
                    "or set GUARD_UPSTREAM_URL"
                )
        except ModelStoreError as exc:
            raise SettingsError(str(exc)) from None
    if settings.triage_enabled:
        from guard.triage.runtime import TriageModel, TriageModelError

        try:
            TriageModel.load(settings.triage_dir, device="cpu", threads=1)
        except TriageModelError as exc:
            hint = "" if "guard triage build" in exc.message else " (run `guard triage build`)"
            raise SettingsError(f"triage classifier: {exc.message}{hint}") from None
    if settings.rails_enabled:
        from rails.config import RailsConfigError
        from rails.engine import RailsEngine

        try:
            RailsEngine.load(settings.rails_dir)
        except RailsConfigError as exc:
            raise SettingsError(f"rails config: {exc}") from None


def app_from_env() -> FastAPI:
    return create_app(Settings.model_validate_json(os.environ[_SETTINGS_ENV]))


def run(settings: Settings) -> None:
    preflight(settings)
    if settings.workers > 1:
        # Several processes share one Prometheus view through the client's multiprocess files.
        prom_dir = settings.home / "prometheus"
        shutil.rmtree(prom_dir, ignore_errors=True)
        prom_dir.mkdir(parents=True)
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(prom_dir.resolve()))
        os.environ[_SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run("guard.server:app_from_env", factory=True, host=settings.host, port=settings.port,
                    workers=settings.workers, log_level=settings.log_level, access_log=False)
    else:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                    log_level=settings.log_level, access_log=False)
