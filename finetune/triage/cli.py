"""`guard triage train | build | eval | classify`. Light at import time: heavy modules load inside commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from guard.settings import Settings
    from guard.triage.runtime import TriageModel

app = typer.Typer(no_args_is_help=True, help="Triage classifier: train, build (ONNX), evaluate, classify.")


def _fail(message: str) -> typer.Exit:
    from guard.cli import fail

    return fail(message)


def _settings() -> Settings:
    from guard.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None


@app.command()
def train(
    out: Annotated[Path | None, typer.Option(help="Artifact directory (default: the shipped one in the repo).")] = None,
    datasets_dir: Annotated[Path | None, typer.Option(help="Public data sets (default GUARD_DATASETS_DIR).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Encoder fine-tune steps (lora/full; shipped: 2400).")] = 2400,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed for data generation and training.")] = 13,
    data_out: Annotated[Path | None, typer.Option(help="Also write the generated splits + manifest here.")] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 autocast where the CPU has native bf16) | bf16 | fp32.")
    ] = "auto",
    recipe: Annotated[
        str, typer.Option(help="Encoder: lora (shipped) | full (fine-tune MiniLM) | frozen (MiniLM as published).")
    ] = "lora",
    objective: Annotated[
        str, typer.Option(help="What lora/full tune the encoder for: labels (shipped) | factorised (the heads' loss).")
    ] = "labels",
    look_alike_weight: Annotated[
        float,
        typer.Option(min=0.0, help="Encoder: weight of look-alike sources' benign rows (labels objective; shipped 1)"),
    ] = 1.0,
) -> None:
    """Generate data, train the classifier (frozen embedding + heads, or a MiniLM fine-tune), calibrate
    thresholds on held-out sources, write the artifact and its model card."""
    from guard.triage.artifact import ARTIFACT_DIR

    ds = datasets_dir if datasets_dir is not None else _settings().datasets_dir
    if datasets_dir is not None and not datasets_dir.is_dir():
        raise _fail(f"datasets directory not found: {datasets_dir}")
    if not ds.is_dir():
        typer.echo(f"note: {ds} not found; training on synthetic data only", err=True)
    from finetune.triage.train import TrainConfig
    from finetune.triage.train import train as run_train

    if precision not in ("auto", "bf16", "fp32"):
        raise _fail(f"--precision must be auto, bf16 or fp32, not {precision!r}")
    if recipe not in ("frozen", "lora", "full"):
        raise _fail(f"--recipe must be frozen, lora or full, not {recipe!r}")
    if objective not in ("labels", "factorised"):
        raise _fail(f"--objective must be labels or factorised, not {objective!r}")
    if look_alike_weight != 1.0 and (objective != "labels" or recipe == "frozen"):
        raise _fail("--look-alike-weight weighs the encoder's labels objective: use it with --recipe lora or full")
    target = out or ARTIFACT_DIR
    cfg = TrainConfig(
        recipe=recipe,
        objective=objective,
        steps=steps,
        threads=threads,
        seed=seed,
        precision=precision,
        look_alike_weight=look_alike_weight,
    )
    cache = _settings().home / "cache" / "triage"
    metrics = run_train(cfg, ds if ds.is_dir() else None, target, data_dir=data_out, cache_dir=cache)
    typer.echo(json.dumps(_brief(metrics), indent=2))
    if ds.is_dir():
        _atlas(target, ds, cache, threads)
    typer.echo(f"artifact written to {target}")


def _atlas(art: Path, ds: Path, cache: Path, threads: int) -> Path:
    """A new encoder needs its own harm atlas (`guard triage atlas`): without one, overrides keep the threshold."""
    from finetune.triage.atlas import build_atlas
    from finetune.triage.data.build import training_split
    from guard.triage.artifact import ARTIFACT_CONFIG

    split, _ = training_split(json.loads((art / ARTIFACT_CONFIG).read_text()).get("train", {}), ds)
    return build_atlas(art, split, cache_dir=cache, threads=threads)


@app.command()
def calibrate(
    artifact: Annotated[Path | None, typer.Option(help="Artifact directory (default: the shipped one).")] = None,
    fpr_budget: Annotated[
        float, typer.Option(min=0.001, max=0.5, help="Union FPR of the harmful labels on each benign calib population.")
    ] = 0.05,
    attack_fpr_budget: Annotated[
        float, typer.Option(min=0.001, max=0.5, help="The same for the attack labels.")
    ] = 0.03,
    datasets_dir: Annotated[Path | None, typer.Option(help="Public data sets (default GUARD_DATASETS_DIR).")] = None,
) -> None:
    """Re-derive the artifact's thresholds for another false-positive budget (no retraining), then re-measure."""
    from finetune.triage.train import recalibrate
    from guard.triage.artifact import ARTIFACT_CONFIG, ARTIFACT_DIR, ArtifactError

    target = artifact or ARTIFACT_DIR
    if not (target / ARTIFACT_CONFIG).is_file() or not (target / "manifest.json").is_file():
        raise _fail(f"not a trained triage artifact ({ARTIFACT_CONFIG} + manifest.json): {target}")
    ds = datasets_dir if datasets_dir is not None else _settings().datasets_dir
    try:
        metrics = recalibrate(target, ds if ds.is_dir() else None, fpr_budget, attack_fpr_budget)
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(_brief(metrics), indent=2))
    typer.echo(f"thresholds rewritten in {target / ARTIFACT_CONFIG}; run `guard triage build` to serve them")


@app.command()
def refit(
    encoder: Annotated[Path, typer.Option(help="Artifact whose encoder is kept (e.g. a `lora` run).")],
    out: Annotated[Path, typer.Option(help="Where the new artifact goes.")],
    datasets_dir: Annotated[Path | None, typer.Option(help="Public data sets (default GUARD_DATASETS_DIR).")] = None,
    threads: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Fit new factorised heads on an artifact's encoder and recalibrate (minutes, no encoder training)."""
    from finetune.triage.data.build import training_split
    from finetune.triage.refit import finish
    from finetune.triage.refit import refit as run_refit
    from guard.triage.artifact import ARTIFACT_CONFIG

    if not (encoder / ARTIFACT_CONFIG).is_file():
        raise _fail(f"not a triage artifact (no {ARTIFACT_CONFIG}): {encoder}")
    ds = datasets_dir if datasets_dir is not None else _settings().datasets_dir
    train_cfg = json.loads((encoder / ARTIFACT_CONFIG).read_text()).get("train", {})
    split, manifest = training_split(train_cfg, ds)
    cfg = {**train_cfg, "threads": threads}
    cache = _settings().home / "cache" / "triage"
    metrics = run_refit(encoder, split, out, train_cfg=cfg, cache_dir=cache, threads=threads)
    finish(out, manifest, metrics)
    _atlas(out, ds, cache, threads)
    typer.echo(json.dumps(_brief(metrics), indent=2))
    typer.echo(f"artifact written to {out}")


@app.command()
def atlas(
    artifact: Annotated[Path | None, typer.Option(help="Artifact directory (default: the shipped one).")] = None,
    datasets_dir: Annotated[Path | None, typer.Option(help="Public data sets (default GUARD_DATASETS_DIR).")] = None,
    threads: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Embed the artifact's harmful training rows into its harm atlas (how far benign overrides may reach)."""
    from guard.triage.artifact import ARTIFACT_CONFIG, ARTIFACT_DIR

    art = artifact or ARTIFACT_DIR
    if not (art / ARTIFACT_CONFIG).is_file():
        raise _fail(f"not a triage artifact (no {ARTIFACT_CONFIG}): {art}")
    ds = datasets_dir if datasets_dir is not None else _settings().datasets_dir
    if not ds.is_dir():
        raise _fail(f"public data sets not found at {ds} (set GUARD_DATASETS_DIR)")
    path = _atlas(art, ds, _settings().home / "cache" / "triage", threads)
    typer.echo(f"harm atlas written to {path}; run `guard triage build` to serve it")


@app.command()
def adapt(
    reviews: Annotated[
        Path | None, typer.Option(help="JSONL of reviewed texts: {text, label: false_positive|unsafe, labels}.")
    ] = None,
    from_store: Annotated[
        bool, typer.Option("--from-store", help="Use the store's active review overrides (GUARD_DB_URL).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Also keep the candidate artifact and adapt.json here.")] = None,
    promote: Annotated[bool, typer.Option(help="Promote a candidate that passes the gate.")] = True,
    datasets_dir: Annotated[Path | None, typer.Option(help="Public data sets (default GUARD_DATASETS_DIR).")] = None,
    threads: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Fit the serving classifier's heads on reviewed mistakes plus a replay of its training mix, recalibrate,
    gate the candidate (held-out reviews fixed; no recall lost, no false positives added on held-out sources),
    register it as a triage version, and promote it when it passes (the proxy swaps to it)."""
    from finetune.registry import RegistryError
    from finetune.triage.adapt import AdaptError, corrections_from_store, read_corrections
    from finetune.triage.cycle import Places, run

    if (reviews is None) == (not from_store):
        raise _fail("name the reviews: --reviews FILE.jsonl or --from-store (one of them)")
    s = _settings()
    try:
        corrections = read_corrections(reviews) if reviews else corrections_from_store(s.database_url)
        result = run(
            Places.from_settings(s, datasets_dir), corrections, promote_passing=promote, threads=threads, out=out
        )
    except (AdaptError, RegistryError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(result.report.to_json())
    typer.echo(result.summary())
    _pinned_note(s)
    if result.report.verdict != "promote":
        raise typer.Exit(code=3)


@app.command("promote")
def promote_(version: Annotated[str, typer.Argument(help="A version from `guard triage history`.")]) -> None:
    """Serve VERSION (running proxies swap to it) and retire the overrides it gets right."""
    from finetune.registry import RegistryError
    from finetune.triage.cycle import retire
    from finetune.triage.versions import promote, registry

    s = _settings()
    try:
        mv = promote(registry(s.model_dir), version, s.triage_dir)
        retired = retire(s.database_url, mv.path)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"triage {mv.version} promoted; {retired} overrides retired")
    _pinned_note(s)


def _pinned_note(s: Settings) -> None:
    if s.triage_model is not None:
        typer.echo(f"note: GUARD_TRIAGE_MODEL pins the proxy to {s.triage_model}; unset it to serve promoted versions")


@app.command()
def rollback() -> None:
    """Serve the version promoted before the current one; overrides the current one retired come back."""
    from finetune.registry import RegistryError
    from finetune.triage.versions import registry
    from guard.store.db import make_engine
    from guard.store.overrides import restore_retired

    s = _settings()
    reg = registry(s.model_dir)
    try:
        left = reg.current()
        mv = reg.rollback()
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    from sqlalchemy.exc import SQLAlchemyError

    try:
        restored = str(restore_retired(make_engine(s.database_url), left.version) if left else 0)
    except SQLAlchemyError as exc:  # the pointer moved; say so, and why the overrides did not come back
        restored = f"no ({str(exc).splitlines()[0][:120]})"
    typer.echo(f"triage {mv.version} current again; {restored} overrides restored")


@app.command()
def history() -> None:
    """Triage versions (current marked), their gate verdicts, and the promotions in order."""
    from finetune.triage.versions import registry

    s = _settings()
    reg = registry(s.model_dir)
    current = reg.current()
    versions = reg.store.versions(reg.name)
    if not versions:
        typer.echo(f"no triage versions yet: the shipped build at {s.triage_dir} serves")
        return
    for v in versions:
        meta = reg.meta(v)
        verdict = meta.get("verdict", {}).get("status", "shipped" if meta.get("shipped") else "-")
        mark = "*" if current and current.version == v else " "
        typer.echo(f"{mark} {v}\tbase={meta.get('base', '-')}\tverdict={verdict}\tdata={meta.get('data_hash', '-')}")
    for h in reg.history():
        typer.echo(f"  {h['at']}  {h['action']} {h['version']} (previous {h['previous']})")


@app.command()
def build(
    out: Annotated[Path | None, typer.Option(help="Output directory (default GUARD_HOME/triage).")] = None,
    artifact: Annotated[Path | None, typer.Option(help="Artifact directory (default: the shipped one).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when up to date.")] = False,
) -> None:
    """Export the artifact to ONNX (fp32 + int8) with its tokenizer and thresholds; quick when up to date."""
    from finetune.triage.export import build as run_build
    from guard.triage.artifact import ARTIFACT_DIR, ArtifactError

    target = out or _settings().triage_dir
    try:
        built = run_build(artifact or ARTIFACT_DIR, target, force=force)
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"triage model {'built' if built else 'up to date'} at {target}")


def _load(model_dir: Path | None, threads: int) -> TriageModel:
    from guard.triage.runtime import TriageModel, TriageModelError

    try:
        return TriageModel.load(model_dir or _settings().triage_dir, threads=threads)
    except TriageModelError as exc:
        raise _fail(str(exc)) from None


@app.command()
def classify(
    text: Annotated[str, typer.Argument(help="Text to classify.")],
    model_dir: Annotated[Path | None, typer.Option(help="Built model directory.")] = None,
    output: Annotated[bool, typer.Option("--output", help="Score as a model answer (refusal joins labels).")] = False,
) -> None:
    """Print scores and labels for one text as JSON."""
    model = _load(model_dir, 1)
    result = model.predict([text], outputs=output)[0]
    typer.echo(
        json.dumps(
            {
                "labels": list(result.labels) or ["benign"],
                "device": result.device,
                "scores": {k: round(v, 4) for k, v in result.scores.items()},
            },
            indent=2,
        )
    )


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="JSONL with {text, label}.")],
    out: Annotated[Path | None, typer.Option(help="Report directory (default GUARD_HOME/triage-eval).")] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Built model directory.")] = None,
    target_fpr: Annotated[float, typer.Option(min=0.0, max=1.0, help="FPR target for the threshold search.")] = 0.05,
    threads: Annotated[int, typer.Option(min=1)] = 1,
    rails: Annotated[
        Path | None,
        typer.Option(
            help="Rails directory whose label tiers the benign sources are "
            "sorted into (split files only; default GUARD_RAILS_DIR)."
        ),
    ] = None,
) -> None:
    """Precision/recall/F1, FPR on benign, confusion matrix, threshold at a target FPR, PR curves; for split
    files also the held-out targets per source, the worst errors and the rails tiers of benign traffic."""
    from finetune.triage.evaluate import EvalInputError, evaluate, read_rows, write_report

    try:
        rows = read_rows(file)
    except EvalInputError as exc:
        raise _fail(str(exc)) from None
    model = _load(model_dir, threads)
    probs, refusal, _ = model.scores([r["text"] for r in rows])
    report = evaluate(rows, probs, model.labels, model.thresholds, target_fpr)
    if all("source" in r for r in rows):  # a split file from `guard triage train --data-out`
        from finetune.triage.scoring import quality_targets, worst_errors

        report["quality_targets"] = quality_targets(rows, probs, refusal, list(model.labels), model.thresholds)
        report["worst_errors"] = worst_errors(rows, probs, list(model.labels), model.thresholds)
        from finetune.triage.tiers import tier_shares

        report["rails_tiers"] = tier_shares(rows, probs, model.labels, model.thresholds, rails or _settings().rails_dir)
    paths = write_report(report, out or _settings().home / "triage-eval")
    shown = ("rows", "benign_fpr_any_label", "classes", "quality_targets")
    typer.echo(json.dumps({k: _brief(report[k]) for k in shown if k in report}, indent=2))
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


def _brief(value: object) -> object:
    return {k: v for k, v in value.items() if k != "per_source_flag_rate"} if isinstance(value, dict) else value
