"""The tuning loop as a recipe: collect -> pairs -> train -> evaluate -> gate -> register (-> promote).

Each step is its own module and CLI command; this file only strings them together, in order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from finetune import pairs as pairs_mod
from finetune.collect import Watermark, collect
from finetune.config import DPOSettings
from finetune.evaluate import EvalOptions, IsRefusal, Suites, answer_ahead, compare, deployed_view
from finetune.gates import GateConfig, decide
from finetune.policy import load_engine, profile_cautions, profile_principles, profile_refusals, rails_output_check
from finetune.registry import Registry
from finetune.report import write_report
from finetune.revise import revise, upstream_generate
from finetune.train import train_dpo
from guard.refusal import HEAD_THRESHOLD, shipped

PAIR_BATCH = 16  # the pair builder's generation batches (as the evaluation's)
REVISION_TOKENS = 160  # a critique, and a revised answer


@dataclass
class CycleOptions:
    model: str
    state_dir: Path  # watermarks, locks, run folders
    models_root: Path
    db_url: str
    rails_dir: Path | None = None
    triage_dir: Path | None = None
    dpo: DPOSettings = field(default_factory=DPOSettings)
    gates: GateConfig = field(default_factory=GateConfig)
    pairs: pairs_mod.PairOptions = field(default_factory=pairs_mod.PairOptions)
    eval: EvalOptions = field(default_factory=EvalOptions)
    min_pairs: int = 20
    settle: timedelta = timedelta(minutes=2)  # records still in the recorder's queue are left for next time
    promote: bool = True
    sample_candidates: bool = True
    suite_limit: int | None = None  # first N prompts of each eval suite (quick runs, tests)
    # The current model answers the gate's suites while the candidate trains, on a core training leaves free.
    answer_ahead: bool = True
    # Public data sets the default gate suites are built from (finetune/suitebuild.py); None or absent: the
    # small shipped suites. `extra_suites`: the users' own suite folders, added to those.
    datasets_dir: Path | None = None
    extra_suites: list[Path] = field(default_factory=list)
    # Critique and revise runs on the upstream when one is set (the proxy's upstream mode), else on the local model.
    upstream_url: str | None = None
    upstream_api_key: str | None = None


@dataclass
class CycleResult:
    status: str  # skipped | rejected | inconclusive (not enough evidence) | promoted | registered
    message: str
    run_dir: Path | None = None
    version: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    verdict: Any = None


def _triage(opts: CycleOptions) -> Any | None:
    if not (opts.triage_dir and Path(opts.triage_dir).is_dir()):
        return None
    from guard.triage.runtime import TriageModel

    return TriageModel.load(opts.triage_dir)


def pair_sources(opts: CycleOptions, current_path: Path | None) -> tuple[pairs_mod.PairSources, IsRefusal]:
    """Wire the real parts: rails policy, the one refusal detector (guard/refusal.py, with the triage model's
    refusal head when there is one), the current model as sampler, encoder, PII mask."""
    triage = _triage(opts)
    detector = shipped().with_head(HEAD_THRESHOLD)
    flags = detector.batch(triage)
    embed: pairs_mod.Embed | None = triage.embed if triage is not None else None
    mask: Callable[..., str] | None = None
    try:
        from rails.pii import mask as pii_mask

        mask = pii_mask
    except ImportError:
        pass
    batched = None
    if opts.sample_candidates and current_path is not None:
        from finetune.batching import BatchedGeneration
        from finetune.generate import LocalLM

        lm = LocalLM(current_path, threads=opts.dpo.threads)
        batched = BatchedGeneration(
            lambda convs, max_new_tokens, sample: lm.generate(
                convs, max_new_tokens=max_new_tokens, sample=sample, batch_size=PAIR_BATCH
            )
        )
    rails = load_engine(opts.rails_dir)
    src = pairs_mod.PairSources(
        refusal_for=profile_refusals(rails),
        is_refusal=lambda text: flags([text])[0],
        output_ok=rails_output_check(rails),
        sample=batched.sampler() if batched is not None else None,
        embed=embed,
        mask=mask,
        caution_for=profile_cautions(rails),
        revise=reviser(opts, batched, profile_principles(rails)),
        flush=batched.flush if batched is not None else None,
    )
    return src, flags


def reviser(
    opts: CycleOptions, batched: Any, principles: Callable[[str | None], tuple[str, ...]]
) -> pairs_mod.Revise | None:
    """Critique and revise on the upstream when configured, else on the local model (in batches); None without
    either."""
    if opts.upstream_url:
        generate = upstream_generate(opts.upstream_url, opts.upstream_api_key, opts.model)
    elif batched is not None:
        generate = batched.greedy(REVISION_TOKENS)
    else:
        return None
    return lambda messages, refusal, profile: revise(messages, refusal, principles(profile), generate)


def _answer_ahead(
    opts: CycleOptions, current: Path, suites: Suites, eval_opts: EvalOptions, spill: Path
) -> multiprocessing.process.BaseProcess | None:
    """Start the current model answering the suites, and making its drift pass into `spill`, in a process of its
    own, when a core is left over from training (torch's thread pool is per process) and its answers are stored;
    else None."""
    spare = (os.cpu_count() or 1) >= opts.dpo.threads + eval_opts.threads
    if not (opts.answer_ahead and spare and eval_opts.reuse_answers):
        return None
    args = (current, suites, replace(eval_opts, workers=1), opts.rails_dir, opts.triage_dir, spill)
    proc = multiprocessing.get_context("spawn").Process(target=answer_ahead, args=args, name="answer-ahead")
    proc.start()
    return proc


def _stop(proc: multiprocessing.process.BaseProcess | None) -> None:
    if proc is not None:
        proc.terminate()
        proc.join()


def run_cycle(opts: CycleOptions, log: Any = print) -> CycleResult:
    from guard.store.db import make_engine

    t: dict[str, float] = {}
    registry = Registry(opts.models_root, opts.model)
    current = registry.current()
    if current is None:
        return CycleResult(
            "skipped", f"no current version of {opts.model} under {opts.models_root}: run `guard models prepare` first"
        )
    watermark = Watermark(opts.state_dir, opts.model)
    run_dir = Path(opts.state_dir) / opts.model / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    # 1. Collect what happened since the last finished cycle.
    t0 = time.perf_counter()
    engine = make_engine(opts.db_url)
    col = collect(engine, since=watermark.get(), until=datetime.now(UTC) - opts.settle, model=opts.model)
    t["collect_s"] = time.perf_counter() - t0
    log(f"collected {col.counts} since {col.since or 'the beginning'}")

    # The current model answers the gate's suites on a spare core, into its answer store, where the evaluation
    # finds them: from here until the candidate is trained (the pairs first, then DPO, each on one core).
    suites = Suites.default(opts.datasets_dir, None, limit=opts.suite_limit, extra=opts.extra_suites)
    # The models alone are answered only for the gate that reads them.
    alone = opts.eval.model_alone or opts.gates.max_bare_harmful_refusal_drop_points is not None
    eval_opts = replace(opts.eval, model_alone=alone)
    spill = run_dir / "drift"  # the drift's per-token log-probs: GBs, removed after the evaluation
    # Each record makes at most one pair: with fewer than `min_pairs` the cycle will skip, so nothing is answered.
    ahead = _answer_ahead(opts, current.path, suites, eval_opts, spill) if len(col.records) >= opts.min_pairs else None
    try:
        # 2. Preference pairs (generating helpful candidates with the current model where needed).
        t0 = time.perf_counter()
        src, refusals = pair_sources(opts, current.path)
        ps = pairs_mod.build(col, src, opts.pairs)
        manifest = pairs_mod.write(
            ps,
            run_dir / "pairs",
            opts.pairs,
            model=opts.model,
            base_version=current.version,
            since=col.since,
            until=col.until,
        )
        del src
        t["pairs_s"] = time.perf_counter() - t0
        n_pairs = manifest["counts"]["train"] + manifest["counts"]["eval"]
        log(f"pairs: {manifest['counts']}")
        if n_pairs < opts.min_pairs:
            # The watermark stays put: these pairs are built again, with the newer ones, next time.
            _stop(ahead)
            shutil.rmtree(spill, ignore_errors=True)
            return CycleResult(
                "skipped", f"only {n_pairs} new pairs (< {opts.min_pairs}); nothing trained", run_dir, timings=t
            )

        # 3. Train a LoRA adapter with DPO on top of the current version.
        t0 = time.perf_counter()
        trained = train_dpo(
            current.path, pairs_mod.load_rows(run_dir / "pairs" / "train.jsonl"), opts.dpo, run_dir / "train"
        )
    except BaseException:
        _stop(ahead)
        raise
    t["train_s"] = time.perf_counter() - t0
    log(f"trained {trained.steps} steps in {trained.seconds:.0f}s ({trained.seconds_per_step:.2f} s/step)")
    suites.held_out = pairs_mod.load_rows(run_dir / "pairs" / "eval.jsonl")
    if ahead is not None:
        t0 = time.perf_counter()
        ahead.join()
        t["answer_ahead_wait_s"] = time.perf_counter() - t0
        if ahead.exitcode != 0:  # nothing lost: the evaluation generates what is not stored
            log(f"answering the suites ahead failed (exit {ahead.exitcode}); the evaluation answers them")

    # 4. Evaluate candidate vs current, and gate.
    t0 = time.perf_counter()
    view = deployed_view(opts.eval, opts.rails_dir, opts.triage_dir)  # measured where it will serve
    try:
        report = compare(current.path, trained.merged_dir, suites, refusals, eval_opts, view, spill)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    verdict = decide(report, opts.gates)
    write_report(report, verdict, run_dir / "report")
    t["eval_s"] = time.perf_counter() - t0

    # 5. Register the candidate either way (the record of a rejection matters too); promote if it passed.
    version = registry.add(
        trained.merged_dir,
        trained.adapter_dir,
        {
            "base": {"name": opts.model, "version": current.version},
            "data_manifest_hash": manifest["hash"],
            "data_counts": manifest["counts"],
            "config": opts.dpo.model_dump(),
            "gates": opts.gates.model_dump(),
            "metrics": {
                k: {m: v for m, v in report[k].items() if m not in ("samples", "outcomes")}
                for k in ("current", "candidate")
            }
            | {"drift": report["drift"]},
            "verdict": verdict.as_dict(),
            "suites": report["suites"],
            "train": {"steps": trained.steps, "seconds": trained.seconds},
            "run_dir": str(run_dir),
        },
    )
    status = {"promote": "registered", "reject": "rejected", "not enough evidence": "inconclusive"}[verdict.status]
    if verdict.passed and opts.promote:
        registry.promote(version)
        status = "promoted"
    watermark.commit(col.until, run=str(run_dir), version=version, status=status)
    (run_dir / "cycle.json").write_text(json.dumps({"status": status, "version": version, "timings": t}, indent=2))
    why = "" if verdict.passed else f" ({verdict.status}): " + "; ".join(verdict.reasons)
    return CycleResult(status, f"{opts.model} {version} {status}{why}", run_dir, version, t, verdict)
