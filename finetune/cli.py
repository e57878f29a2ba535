"""`guard prefs|finetune|retrain` commands. Only typer and stdlib at import time; the heavy parts load inside.

Commands: `guard prefs build`, `guard finetune dpo|eval|register|promote|rollback|history|export`,
`guard retrain [--every 24h]`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer

prefs_app = typer.Typer(no_args_is_help=True, help="Preference pairs from recorded traffic.")
finetune_app = typer.Typer(no_args_is_help=True, help="DPO fine-tuning, evaluation gates, model registry.")


def _fail(msg: str) -> typer.Exit:
    from guard.cli import fail

    return fail(msg)


def _settings() -> Any:
    from guard.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None


def _since(text: str | None) -> datetime | None:
    """'24h' / '7d' (relative) or an ISO timestamp."""
    if not text:
        return None
    from finetune.schedule import parse_interval

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_interval(text))
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--since {text!r}: use an ISO time (2026-01-31T00:00) or a duration (24h, 7d)") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _options(
    model: str | None,
    config: Path | None,
    gates: Path | None,
    min_pairs: int,
    promote: bool,
    settle_s: float,
    caution_anchors: int | None = None,
    max_refuse_share: float | None = None,
    min_refuse_share: float | None = None,
    **dpo: Any,
) -> Any:
    from finetune.config import ConfigError, load_config
    from finetune.cycle import CycleOptions
    from finetune.evaluate import EvalOptions
    from finetune.gates import load_gates
    from guard.triage.versions import serving_dir

    s = _settings()
    try:
        cfg, gate_cfg = load_config(config, **dpo), load_gates(gates)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    opts = CycleOptions(
        model=model or s.model,
        state_dir=s.home / "finetune",
        models_root=s.model_dir,
        db_url=s.database_url,
        rails_dir=s.rails_dir,
        triage_dir=serving_dir(s),
        dpo=cfg,
        gates=gate_cfg,
        min_pairs=min_pairs,
        promote=promote,
        settle=timedelta(seconds=settle_s),
        # the gate measures the candidate as this proxy serves it
        eval=EvalOptions(context="deployed" if s.rails_enabled else "bare", triage=s.triage_enabled),
        datasets_dir=s.datasets_dir,
        upstream_url=s.upstream_url,
        upstream_api_key=s.upstream_api_key,
    )
    knobs = {
        "caution_anchors": caution_anchors,
        "max_refuse_share": max_refuse_share,
        "min_refuse_share": min_refuse_share,
    }
    for name, value in knobs.items():  # PairOptions fields the command line set
        if value is not None:
            setattr(opts.pairs, name, value)
    if opts.pairs.min_refuse_share > opts.pairs.max_refuse_share:
        raise _fail(
            f"--min-refuse-share {opts.pairs.min_refuse_share} is above "
            f"--max-refuse-share {opts.pairs.max_refuse_share}"
        )
    return opts


def _registry(model: str | None) -> Any:
    from finetune.registry import Registry

    s = _settings()
    return Registry(s.model_dir, model or s.model)


ModelOpt = Annotated[str | None, typer.Option(help="Model name in the model store (default GUARD_MODEL).")]
ConfigOpt = Annotated[Path | None, typer.Option(help="DPO YAML (default finetune/configs/dpo.yaml).")]
GatesOpt = Annotated[Path | None, typer.Option(help="Gates YAML (default: built-in gates).")]
CautionOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="At most N caution anchors: requests the input rails refused (reviewed correct), asked again under "
        "their label's caution instruction, chosen = the refusal (0 = off; default PairOptions' 40).",
    ),
]

# The refusal-side share of the pairs: refuse more, keep refusing and caution anchors over all pairs.
_MAX_SHARE = "Cap on the pairs' refusal-side share (default 0.5)."
_MIN_SHARE = "Floor on it: help-more pairs past it are dropped, reviewed ones kept first (default 0, off)."
MaxShareOpt = Annotated[float | None, typer.Option(min=0.0, max=1.0, help=_MAX_SHARE)]
MinShareOpt = Annotated[float | None, typer.Option(min=0.0, max=1.0, help=_MIN_SHARE)]


@prefs_app.command("build")
def prefs_build(
    out: Annotated[Path, typer.Option(help="Output folder for train/eval/review JSONL and manifest.json.")],
    since: Annotated[
        str | None, typer.Option(help="ISO time or duration (24h); default: the model's watermark.")
    ] = None,
    model: ModelOpt = None,
    sample: Annotated[bool, typer.Option(help="Sample helpful candidates from the current model.")] = True,
    caution_anchors: CautionOpt = None,
    max_refuse_share: MaxShareOpt = None,
    min_refuse_share: MinShareOpt = None,
) -> None:
    """Build preference pairs from recorded exchanges, reviews and feedback."""
    from finetune import pairs
    from finetune.collect import Watermark, collect
    from finetune.cycle import pair_sources
    from finetune.upstream import deployment_meta, record_model
    from guard.store.db import make_engine

    s = _settings()
    opts = _options(model, None, None, 0, False, 0.0, caution_anchors, max_refuse_share, min_refuse_share)
    if not sample:
        opts.sample_candidates = False
    cur = None if s.upstream_url else _registry(opts.model).current()
    start = _since(since) or Watermark(opts.state_dir, opts.model).get()
    col = collect(make_engine(opts.db_url), since=start, model=record_model(model, s.upstream_url, opts.model))
    src, _ = pair_sources(opts, cur.path if cur else None)
    manifest = pairs.write(
        pairs.build(col, src, opts.pairs), out, opts.pairs, model=opts.model, **deployment_meta(col, s.upstream_url)
    )
    typer.echo(json.dumps(manifest["counts"]))


@finetune_app.command("dpo")
def finetune_dpo(
    pairs_file: Annotated[Path, typer.Option("--pairs", help="train.jsonl from `guard prefs build`.")],
    out: Annotated[Path, typer.Option(help="Output folder (adapter/, merged/, train_log.json).")],
    base: Annotated[Path | None, typer.Option(help="Model folder (default: the current version).")] = None,
    config: ConfigOpt = None,
    max_steps: Annotated[int | None, typer.Option(help="Override max_steps.")] = None,
    model: ModelOpt = None,
) -> None:
    """Train a LoRA adapter with DPO and write the merged model."""
    from finetune.config import ConfigError, load_config
    from finetune.pairs import load_rows
    from finetune.train import train_dpo

    if not pairs_file.is_file():
        raise _fail(f"--pairs {pairs_file}: no such file")
    try:
        cfg = load_config(config, max_steps=max_steps)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if base is None:
        cur = _registry(model).current()
        if cur is None:
            raise _fail("no current model version: pass --base or run `guard models prepare`")
        base = cur.path
    res = train_dpo(base, load_rows(pairs_file), cfg, out)
    typer.echo(f"{res.steps} steps, {res.seconds_per_step:.2f} s/step -> {res.merged_dir}")


@finetune_app.command("eval")
def finetune_eval(
    candidate: Annotated[Path, typer.Option(help="Candidate model folder (e.g. OUT/merged).")],
    out: Annotated[Path, typer.Option(help="Report folder (report.md, report.json, before_after.png).")],
    current: Annotated[Path | None, typer.Option(help="Model to compare with (default: current version).")] = None,
    held_out: Annotated[Path | None, typer.Option(help="eval.jsonl of held-out pairs.")] = None,
    gates: GatesOpt = None,
    model: ModelOpt = None,
    context: Annotated[
        str,
        typer.Option(
            help="deployed: suite prompts go through triage and the input rails "
            "first, as served; bare: the models alone."
        ),
    ] = "deployed",
    profile: Annotated[str | None, typer.Option(help="Rails profile of the deployed view.")] = None,
    suites_dirs: Annotated[
        list[Path] | None, typer.Option("--suites", help="Your own suite folder (repeatable), added to the defaults.")
    ] = None,
) -> None:
    """Compare candidate vs current on the gate suites and held-out pairs; exit 1 unless the verdict is promote."""
    from finetune.config import ConfigError
    from finetune.evaluate import EvalOptions, Suites, compare, deployed_view
    from finetune.gates import decide, load_gates
    from finetune.report import write_report
    from guard.refusal import HEAD_THRESHOLD, shipped
    from guard.triage.runtime import TriageModelError
    from rails.config import RailsConfigError

    if context not in ("deployed", "bare"):
        raise _fail(f"--context {context!r}: use deployed or bare")
    try:
        gate_cfg = load_gates(gates)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if current is None:
        cur = _registry(model).current()
        if cur is None:
            raise _fail("no current model version: pass --current")
        current = cur.path
    s = _settings()
    opts = EvalOptions(context=cast(Literal["deployed", "bare"], context), profile=profile, triage=s.triage_enabled)
    try:
        view = deployed_view(opts, s.rails_dir if s.rails_enabled else None, s.triage_dir)
    except (RailsConfigError, TriageModelError) as exc:
        raise _fail(str(exc)) from None
    refusals = shipped().with_head(HEAD_THRESHOLD).batch(view.triage if view is not None else None)
    try:
        suites = Suites.default(s.datasets_dir, held_out, extra=suites_dirs or [])
    except (ConfigError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    report = compare(current, candidate, suites, refusals, opts, view)
    verdict = decide(report, gate_cfg)
    paths = write_report(report, verdict, out)
    typer.echo(paths["md"].read_text())
    raise typer.Exit(0 if verdict.passed else 1)


@finetune_app.command("register")
def finetune_register(
    candidate: Annotated[Path, typer.Option(help="Training output folder (with merged/ and adapter/).")],
    report: Annotated[Path | None, typer.Option(help="report.json from `guard finetune eval`.")] = None,
    promote: Annotated[bool, typer.Option(help="Promote if the report's verdict passed.")] = False,
    model: ModelOpt = None,
) -> None:
    """Add a trained candidate as a new version (and promote it when its gate verdict passed)."""
    reg = _registry(model)
    meta: dict[str, Any] = {}
    if report is not None:
        meta = json.loads(report.read_text())
        meta = {
            "metrics": {k: meta[k] for k in ("current", "candidate", "drift") if k in meta},
            "verdict": meta.get("verdict"),
        }
    version = reg.add(candidate / "merged", candidate / "adapter", meta)
    typer.echo(f"registered {reg.name} {version}")
    if promote:
        if not (meta.get("verdict") or {}).get("passed"):
            raise _fail("not promoted: no passing gate verdict (pass --report with a passing report.json)")
        reg.promote(version)
        typer.echo(f"promoted {reg.name} {version}")


@finetune_app.command("promote")
def finetune_promote(version: str, model: ModelOpt = None) -> None:
    """Point `current` at VERSION (atomic); the proxy's local backend hot-swaps to it."""
    from guard.modelstore import ModelStoreError

    try:
        mv = _registry(model).promote(version)
    except ModelStoreError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"current {mv.name} = {mv.version}")


@finetune_app.command("rollback")
def finetune_rollback(model: ModelOpt = None) -> None:
    """Point `current` back at the previously promoted version (history kept)."""
    from guard.modelstore import ModelStoreError

    try:
        mv = _registry(model).rollback()
    except ModelStoreError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"current {mv.name} = {mv.version}")


@finetune_app.command("history")
def finetune_history(model: ModelOpt = None) -> None:
    """Promotions and rollbacks, oldest first."""
    for h in _registry(model).history():
        typer.echo(f"{h['at']}\t{h['action']}\t{h['version']}\t(previous {h['previous']})")


@finetune_app.command("export")
def finetune_export(
    version: str,
    dest: Path,
    what: Annotated[str, typer.Option(help="adapter (LoRA, for vLLM) or merged weights.")] = "adapter",
    model: ModelOpt = None,
) -> None:
    """Write a version's LoRA adapter or merged weights for another serving stack."""
    from guard.modelstore import ModelStoreError

    try:
        path = _registry(model).export(version, dest, what)
    except ModelStoreError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"exported {what} to {path}")


def retrain(
    every: Annotated[str | None, typer.Option(help="Repeat in-process at this interval (e.g. 24h).")] = None,
    min_pairs: Annotated[int, typer.Option(help="Skip the cycle when fewer new pairs than this.")] = 20,
    config: ConfigOpt = None,
    gates: GatesOpt = None,
    promote: Annotated[bool, typer.Option(help="Promote a candidate that passes the gates.")] = True,
    settle_s: Annotated[float, typer.Option(help="Leave the newest seconds of records for the next run.")] = 120.0,
    model: ModelOpt = None,
    caution_anchors: CautionOpt = None,
    max_refuse_share: MaxShareOpt = None,
    min_refuse_share: MinShareOpt = None,
) -> None:
    """Run the whole cycle once (cron / Kubernetes CronJob), or every INTERVAL with --every."""
    from finetune.cycle import run_cycle
    from finetune.schedule import LockBusy, parse_interval, retrain_lock
    from finetune.schedule import every as run_every
    from finetune.triage.cycle import Places, adapt_step
    from finetune.upstream import export_cycle, record_model
    from guard.store.db import make_engine

    s = _settings()
    opts = _options(
        model, config, gates, min_pairs, promote, settle_s, caution_anchors, max_refuse_share, min_refuse_share
    )
    engine = make_engine(opts.db_url)

    def once() -> None:
        with retrain_lock(opts.state_dir, opts.model, engine):
            typer.echo(adapt_step(Places.from_settings(s), threads=opts.dpo.threads))  # the guard's own classifier
            if s.upstream_url:  # a hosted model: export the pairs for its own trainer
                exported = export_cycle(
                    opts, s.upstream_url, record_model(model, s.upstream_url, opts.model), typer.echo
                )
                typer.echo(f"exported: {exported.report()}")
                return
            res = run_cycle(opts, log=typer.echo)
        typer.echo(f"{res.status}: {res.message}")

    if every is None:
        try:
            once()
        except LockBusy as exc:
            raise _fail(
                f"skipped: {exc}",
            ) from None
        return
    try:
        interval = parse_interval(every)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    run_every(interval, once, log=typer.echo)


def register(root_app: typer.Typer) -> None:
    root_app.add_typer(prefs_app, name="prefs")
    root_app.add_typer(finetune_app, name="finetune")
    root_app.command("retrain")(retrain)
