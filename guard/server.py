"""`guard serve`: check what would make startup fail, then run uvicorn (one or several workers)."""

from __future__ import annotations

import errno
import os
import shutil
import socket

import uvicorn
from fastapi import FastAPI

from guard.app import create_app
from guard.auth import Authenticator
from guard.modelstore import ModelStore, ModelStoreError
from guard.settings import Settings, SettingsError

_SETTINGS_ENV = "GUARDTUNE_SETTINGS_JSON"  # hands resolved settings to worker processes


def check_port(host: str, port: int) -> None:
    """Fail in one line when the address is taken, before seconds of model loading (uvicorn binds it later)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SettingsError(f"invalid setting GUARD_HOST: cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SettingsError(f"port {port} on {host} is already in use (GUARD_PORT / --port)") from None
            raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def preflight(settings: Settings) -> None:
    """Fail before binding the port, with one line naming what is wrong."""
    Authenticator.from_settings(settings)
    check_port(settings.host, settings.port)  # before the seconds of loading models below
    if settings.redis_url:
        from guard.redisconn import ping

        ping(settings.redis_url)
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
        from rails.nemo_llm import TaskModels

        # No backend: nothing is asked; the endpoints a NeMo config names are probed as serving would.
        probe = TaskModels(None, connect_timeout_s=settings.upstream_connect_timeout_s)
        try:
            RailsEngine.load(settings.rails_dir, models=probe)
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
        uvicorn.run(
            "guard.server:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            access_log=False,
        )
    else:
        uvicorn.run(
            create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False
        )
