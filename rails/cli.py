"""`guard rails ...`: validate a rails directory offline, run policy regression cases against it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, help="Rails configs: check, test.")


def _fail(message: str) -> typer.Exit:
    from guard.cli import fail

    return fail(message)


@app.command("check")
def check(rails_dir: Annotated[Path, typer.Argument(help="Rails directory (guard.yml, config.yml, *.co).")]) -> None:
    """Validate a rails directory: schema, regexes, profiles, tenants. No model needed."""
    import logging

    from rails.compiled import compile_profile
    from rails.config import RailsConfigError, read_rails_dir
    from rails.policy import effective

    logging.getLogger("rails.compiled").setLevel(logging.ERROR)  # intents without an encoder are expected here
    notes: list[str] = []
    try:
        spec = read_rails_dir(rails_dir)
        for name in spec.policy.profile_names:
            compile_profile(effective(spec.policy, name), encoder=None)
        if spec.needs_nemo:
            notes = _check_nemo(rails_dir)
    except RailsConfigError as exc:
        raise _fail(str(exc)) from None
    nemo = " (Colang flows: runs NeMo LLMRails as a stage; needs the `nemo` extra)" if spec.needs_nemo else ""
    typer.echo(f"ok: {rails_dir} hash={spec.rails_hash} profiles={','.join(spec.policy.profile_names)}{nemo}")
    typer.echo(f"policy: {spec.policy_source}")
    for note in notes:
        typer.echo(f"note: {note}", err=True)


def _check_nemo(rails_dir: Path) -> list[str]:
    """Build the NeMo stage exactly as serving does (Colang parsed, models resolved, no model called)."""
    import logging

    try:
        import nemoguardrails  # noqa: F401
    except ModuleNotFoundError:
        typer.echo("note: nemoguardrails is not installed; Colang files were not parsed", err=True)
        return []
    from rails.engine import RailsEngine

    logging.getLogger("nemoguardrails").setLevel(logging.ERROR)
    logging.getLogger("rails.nemo").setLevel(logging.ERROR)  # its notes are printed once, below the verdict
    nemo = RailsEngine.load(rails_dir).nemo
    return nemo.notes if nemo is not None else []


@app.command("build-embedding")
def build_embedding(
    out: Annotated[Path | None, typer.Option(help="Output directory (default: GUARD_HOME/minilm).")] = None,
    force: Annotated[bool, typer.Option(help="Export again even if both models exist.")] = False,
) -> None:
    """Export NeMo's MiniLM sentence embedding to ONNX (fp32 + int8) for dialog rails (needs torch once;
    serving does not)."""
    from guard.settings import load_settings
    from rails.embedding import ONNX_FILE, export_onnx, is_built

    out = out or load_settings().home / "minilm"
    if is_built(out) and not force:
        typer.echo(f"ok: {out / ONNX_FILE} (already built; --force to export again)")
        return
    try:
        path = export_onnx(out)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise _fail(f"{exc}; the export needs the `train` extra (torch, transformers)") from None
    typer.echo(f"ok: {path}")


@app.command("test")
def test(
    rails_dir: Annotated[Path, typer.Argument(help="Rails directory.")],
    cases: Annotated[Path, typer.Argument(help="cases.yml (relative paths are looked up in RAILS_DIR too).")],
    triage_dir: Annotated[
        Path | None, typer.Option(help="Triage model directory (default: GUARD_HOME/triage).")
    ] = None,
    no_triage: Annotated[
        bool, typer.Option("--no-triage", help="Run without the classifier (label rails idle).")
    ] = False,
) -> None:
    """Run example conversations against a config with the real triage model; report which rail fired."""
    import asyncio

    from rails.cases import load_cases, run_case
    from rails.config import RailsConfigError
    from rails.engine import RailsEngine

    if not cases.is_file() and (rails_dir / cases).is_file():
        cases = rails_dir / cases
    try:
        stage = None if no_triage else _triage_stage(triage_dir)
        engine = RailsEngine.load(rails_dir, scorer=stage, encoder=stage)
        items = load_cases(cases)
    except RailsConfigError as exc:
        raise _fail(str(exc)) from None

    async def run_all() -> list:
        if stage is not None:
            await stage.start()
        try:
            return [await run_case(engine, c, stage) for c in items]
        finally:
            if stage is not None:
                await stage.aclose()

    failed = 0
    results = asyncio.run(run_all())
    for r in results:
        failed += not r.passed
        line = f"{r.status:5s} {r.case.name}: {r.outcome}; rails: {', '.join(r.fired) or '-'}"
        typer.secho(line, fg=None if r.passed else typer.colors.RED)
        for p in r.problems:
            typer.echo(f"      {p}")
        if r.case.known_issue:
            typer.echo(f"      known issue: {r.case.known_issue}")
    known = sum(r.status == "KNOWN" for r in results)
    note = f" ({known} known issue{'s' if known != 1 else ''})" if known else ""
    typer.echo(f"{len(items) - failed - known}/{len(items)} cases passed{note}")
    if failed:
        raise typer.Exit(1)


def _triage_stage(triage_dir: Path | None) -> Any:
    """The pipeline's own triage stage (same text layout and batching as the proxy)."""
    from guard.settings import load_settings

    path = triage_dir or load_settings().triage_dir
    from guard.triage.runtime import TriageModel, TriageModelError
    from guard.triage.stage import TriageStage

    try:
        return TriageStage(TriageModel.load(path, device="cpu"), max_wait_ms=0.0)
    except TriageModelError as exc:
        raise _fail(f"{exc}; or pass --no-triage") from None
