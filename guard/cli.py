"""`guard` command line. Sub-commands live beside the code they drive; this module only wires them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from guard import __version__
from guard.settings import SettingsError, load_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="guardtune: guardrail proxy for LLM chatbots that learns from its own traffic.",
)
models_app = typer.Typer(no_args_is_help=True, help="Local models: prepare, list.")
app.add_typer(models_app, name="models")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear line for a user mistake and exit; no stack trace."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"guardtune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (GUARD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (GUARD_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes (GUARD_WORKERS).")] = None,
    rails_dir: Annotated[Path | None, typer.Option(help="Rails config directory (GUARD_RAILS_DIR).")] = None,
    upstream_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL; unset = local model.")] = None,
    model: Annotated[str | None, typer.Option(help="Served model name (GUARD_MODEL).")] = None,
) -> None:
    """Run the proxy."""
    from guard.server import run

    try:
        settings = load_settings(
            host=host, port=port, workers=workers, rails_dir=rails_dir, upstream_url=upstream_url, model=model
        )
        run(settings)
    except SettingsError as exc:
        raise fail(str(exc)) from None


@models_app.command("prepare")
def models_prepare(
    force: Annotated[bool, typer.Option(help="Convert again even if a version exists.")] = False,
) -> None:
    """Convert the embedded SmolLM2 GGUF into a safetensors model folder and point `current` at it."""
    from guard.backends.prepare import PrepareError, prepare_default_model

    try:
        settings = load_settings()
        mv = prepare_default_model(settings, force=force)
    except (SettingsError, PrepareError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{mv.name} {mv.version} ready at {mv.path}")


@models_app.command("list")
def models_list() -> None:
    """List local models and their current versions."""
    from guard.modelstore import ModelStore

    store = ModelStore(load_settings().model_dir)
    for name in store.names():
        cur = store.current(name)
        typer.echo(f"{name}\tcurrent={cur.version if cur else '-'}\tversions={','.join(store.versions(name))}")


def _mount_subcommands() -> None:
    # Each group is optional so a lean install (proxy only) still has a working CLI.
    groups = [
        ("finetune.triage.cli", "triage"),
        ("guard.store.cli", "db"),
        ("rails.cli", "rails"),
        ("finetune.cli", None),
    ]
    import importlib

    for module, name in groups:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(module.split(".")[0]):
                continue  # that group is not written / not installed
            raise
        if name is None:
            mod.register(app)
        else:
            app.add_typer(mod.app, name=name)


def main() -> None:
    _mount_subcommands()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
