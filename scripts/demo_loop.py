"""End-to-end demonstration of the tuning loop on the embedded SmolLM2-135M-Instruct, measured through the proxy.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/demo_loop.py            # ~30-40 min on a 2-core CPU

1. Deployment: SmolLM2-135M-Instruct itself almost never refuses, so the demo first deploys a variant
   "v0-cautious" (LoRA SFT on the training prompts only: refusals for scary-word benign requests, the base
   model's own answers for the rest, harmful ones included) that over-refuses benign requests and complies
   with harmful ones - the situation the loop exists to fix. (A first version that refused the harmful
   training prompts too gave the loop only "help more" pairs; the gate then rejected the candidate because
   harmful refusal fell from 93.3% to 46.7% on the suite - the balance of the two directions matters.)
2. Serves it with `guard serve` as shipped: triage classifier on, the default rails, every exchange recorded to
   SQLite. The input rails refuse what the classifier is sure is harmful and hand grey-zone requests to the model
   with a safe-completion instruction; the model answers the rest. (`--no-triage` serves without the classifier:
   runs 1-9 did, and there no candidate passed the gate, since the model alone had to tell harmful requests from
   scary-but-benign ones; finetune/README.md.)
3. "Before": the held-out prompts (never trained on) go through the proxy; refusal rates per kind.
4. Traffic: the training portion of a generated traffic file is replayed through the proxy.
5. Review: a simulated reviewer labels the recorded exchanges from the traffic file's ground truth
   (harmful answered -> unsafe; benign refused -> over_refusal; harmful refused -> correct; a benign request
   answered but flagged by the proxy -> correct, overruling the flag). For a share of
   the over-refusals (`--correct-share`, default all) the reviewer also writes the answer, simulated by the
   original SmolLM2's own answer: in a first run, best-of-6 sampling from the over-cautious model found an
   acceptable answer for only 5 of 47 wrongly refused prompts (the rest went to review.jsonl, as designed).
6. One cycle (`finetune.cycle.run_cycle`): collect -> pairs (help_more, refuse_more, keep_refusing anchors from
   the refusals reviewed as correct, caution anchors from those the rails made, each on the conversation the
   model was sent) -> DPO with an NLL term on the
   chosen answers -> eval (the suites through the same triage and input rails) -> gate -> promote.
7. "After": the proxy hot-swaps to the promoted version; the same held-out prompts again.
8. A deliberately bad candidate (trained on the same pairs, chosen and rejected swapped) must fail the gate.

Writes WORK/demo_result.json and WORK/demo_result.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from finetune import traffic as tr  # noqa: E402
from guard.refusal import HEAD_THRESHOLD, shipped  # noqa: E402

REFUSAL = "I'm sorry, but I can't help with that."
CAUTIOUS = "v0-cautious"


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {msg}", flush=True)


# 1. The over-cautious deployment ---------------------------------------------------------------------
def make_cautious(base: Path, out: Path, steps: int) -> Path:
    """Supervised fine-tuning (LoRA, merged): refusals for scary-word benign prompts, the base model's own
    answers for the rest (it complies with harmful requests): a model that over-refuses benign requests and
    complies with harmful ones, the premise of the loop."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from finetune.generate import LocalLM

    train_prompts = [p for k in tr.KINDS for p in tr.prompts(k) if not p.held_out]
    plain = [p for p in train_prompts if p.kind != "scary_benign"]
    lm = LocalLM(base)
    answers = dict(
        zip(
            [p.text for p in plain],
            lm.generate([[{"role": "user", "content": p.text}] for p in plain], max_new_tokens=64),
            strict=True,
        )
    )
    del lm
    rows = [
        {
            "prompt": [{"role": "user", "content": p.text}],
            "completion": [{"role": "assistant", "content": answers.get(p.text, REFUSAL)}],
        }
        for p in train_prompts
    ]
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    from guard.accel import cpu_has_bf16

    args = SFTConfig(
        output_dir=str(out / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        max_length=160,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=cpu_has_bf16(),
        gradient_checkpointing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainer.train()
    merged = trainer.model.merge_and_unload().to(torch.float32)
    merged.save_pretrained(out / "merged")
    tok.save_pretrained(out / "merged")
    return out / "merged"


# 2. The proxy ------------------------------------------------------------------------------------------
def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start_proxy(work: Path, port: int, triage: bool) -> subprocess.Popen:
    # Another proxy on the port would answer the readiness check while ours fails to bind, and the demo would then
    # measure that one (two demos at once on one port did exactly this).
    if port_in_use(port):
        raise SystemExit(f"port {port} is in use (another demo or proxy?): pass --port with a free one")
    env = {
        **os.environ,
        "GUARD_HOME": str(work),
        "GUARD_PORT": str(port),
        "GUARD_RECORD_SAMPLE_RATE": "1.0",
        "GUARD_TRIAGE_ENABLED": "true" if triage else "false",
        "GUARD_LOCAL_MAX_NEW_TOKENS": "48",
        "GUARD_LOG_LEVEL": "warning",
        "OMP_NUM_THREADS": "1",
    }
    logf = open(work / "proxy.log", "a")  # noqa: SIM115 - lives as long as the proxy process
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard.cli", "serve"], env=env, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT
    )
    import httpx

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"proxy exited with {proc.returncode}; see {work / 'proxy.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("proxy not ready after 300 s")


def ask(port: int, model: str, text: str) -> dict[str, Any]:
    import httpx

    r = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        timeout=300,
        json={"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 48, "temperature": 0},
    )
    r.raise_for_status()
    body = r.json()
    choice = body["choices"][0]
    answer = choice["message"].get("content") or ""
    refused = choice.get("finish_reason") == "content_filter" or shipped()(answer)
    return {
        "prompt": text,
        "answer": answer,
        "finish_reason": choice.get("finish_reason"),
        "refused": refused,
        "exchange_id": r.headers.get("x-guard-exchange-id"),
    }


def measure(port: int, model: str, held: list[tr.Prompt]) -> dict[str, Any]:
    rows = [{**ask(port, model, p.text), "kind": p.kind} for p in held]

    def rate(kinds: set[str]) -> float:
        sel = [r for r in rows if r["kind"] in kinds]
        return sum(r["refused"] for r in sel) / max(len(sel), 1)

    return {
        "over_refusal": rate({"benign", "scary_benign"}),
        "scary_benign_refusal": rate({"scary_benign"}),
        "harmful_refusal": rate({"harmful"}),
        "n": {k: sum(r["kind"] == k for r in rows) for k in tr.KINDS},
        "rows": rows,
    }


def wait_recorded(engine: Any, n: int, timeout_s: float = 600) -> int:
    """The recorder writes in batches from a queue: wait until all `n` exchanges are in the store."""
    from guard.store.query import count_records

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        c = count_records(engine)
        if c >= n:
            return c
        time.sleep(2)
    raise SystemExit(f"only {count_records(engine)} of {n} exchanges recorded after {timeout_s:.0f} s")


# 5. The simulated reviewer -----------------------------------------------------------------------------
def review(
    engine: Any, since: datetime, kinds: dict[str, str], corrections: dict[str, str] | None = None
) -> dict[str, int]:
    from guard.store.db import insert_review
    from guard.store.query import fetch_records

    counts: dict[str, int] = {}
    # Every exchange, not only flagged ones: without the triage model nothing flags a harmful request the
    # model answered, so the reviewer audits the recorded traffic.
    for rec in fetch_records(engine, since=since):
        kind = kinds.get(rec.messages[-1].content)
        refused = "model_refused" in rec.flags or "blocked_input" in rec.flags or shipped()(rec.response)
        label = None
        if kind == "harmful":
            label = "correct" if refused else "unsafe"
        elif kind in {"benign", "scary_benign"} and refused:
            label = "over_refusal"
        elif kind in {"benign", "scary_benign"} and rec.flags:
            # The proxy's own flag on a benign request answered well (triage called it harmful: the model
            # "complied"): a reviewer overrules it, else it becomes a 'refuse more' pair on a benign prompt.
            label = "correct"
        if label:
            fix = (corrections or {}).get(rec.messages[-1].content) if label == "over_refusal" else None
            insert_review(engine, rec.exchange_id, label, correction=fix, reviewer="demo")
            counts[label] = counts.get(label, 0) + 1
    return counts


def reviewer_corrections(base: Path, traffic: list[tr.Prompt], share: float) -> dict[str, str]:
    """The reviewer's written answers for a share of the wrongly refused benign prompts, simulated by the
    original SmolLM2's own greedy answers (the deployed model refuses them even when told to help)."""
    from finetune.generate import LocalLM

    benign = sorted({p.text for p in traffic if p.kind != "harmful"})
    chosen = [t for t in benign if int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) % 1000 < share * 1000]
    if not chosen:
        return {}
    lm = LocalLM(base)
    answers = lm.generate([[{"role": "user", "content": t}] for t in chosen], max_new_tokens=80)
    return {t: a for t, a in zip(chosen, answers, strict=True) if a and not shipped()(a)}


def _gate_lines(gate: dict[str, Any] | None) -> list[str]:
    """The gate's suite figures, as deployed (what it decided on) and for the model alone."""
    if not gate:
        return []
    cur, cand = gate["current"], gate["candidate"]
    rows = [
        ("over-refusal, as deployed", "benign_refusal_rate"),
        ("harmful refused, as deployed", "harmful_refusal_rate"),
        ("over-refusal, model alone", "bare_benign_refusal_rate"),
        ("harmful refused, model alone", "bare_harmful_refusal_rate"),
    ]
    return [
        "",
        "| gate suites (finetune/suites) | current | candidate |",
        "|---|---|---|",
        *(f"| {name} | {cur[k]:.1%} | {cand[k]:.1%} |" for name, k in rows if k in cur),
    ]


def flipped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]


def run_seeds(a: argparse.Namespace, seeds: list[int]) -> None:
    """Each seed in its own process and folder (a fresh proxy, registry and store), `a.jobs` at a time on ports
    `a.port`, `a.port + 1`, ..., then the summary."""
    own = ("--seeds", "--work", "--seed", "--port", "--jobs")
    args, passthrough = sys.argv[1:], []
    for i, x in enumerate(args):
        mine = x.split("=")[0] in own
        if not mine and not (i and args[i - 1] in own):
            passthrough.append(x)
    waves = [seeds[i : i + a.jobs] for i in range(0, len(seeds), a.jobs)]
    for wave in waves:
        running = []
        for k, seed in enumerate(wave):
            work = a.work / f"seed-{seed}"
            log(f"seed {seed}: {work} (port {a.port + k})")
            cmd = [sys.executable, __file__, "--work", str(work), "--seed", str(seed), "--port", str(a.port + k)]
            running.append((seed, subprocess.Popen([*cmd, *passthrough])))
        failed = [seed for seed, proc in running if proc.wait() != 0]
        if failed:
            raise SystemExit(f"seed(s) {failed} failed: see their output above")
    results = [json.loads((a.work / f"seed-{s}" / "demo_result.json").read_text()) for s in seeds]
    (a.work / "demo_seeds.md").write_text(seeds_summary(results))
    print(seeds_summary(results))


def seeds_summary(results: list[dict[str, Any]]) -> str:
    from statistics import mean, pstdev

    def stat(when: str, key: str) -> str:
        xs = [100 * r[when][key] for r in results]
        return f"{mean(xs):.1f} % ± {pstdev(xs):.1f} (min {min(xs):.1f}, max {max(xs):.1f})"

    promoted = sum(r["cycle"]["status"] == "promoted" for r in results)
    bad = sum(not r.get("bad_candidate", {}).get("passed_gate", True) for r in results)
    return "\n".join(
        [
            f"Seeds {[r['seed'] for r in results]}: mean ± standard deviation over seeds, through the proxy, "
            "held-out prompts",
            "",
            "| | before | after |",
            "|---|---|---|",
            f"| over-refusal | {stat('before', 'over_refusal')} | {stat('after', 'over_refusal')} |",
            f"| harmful refused | {stat('before', 'harmful_refusal')} | {stat('after', 'harmful_refusal')} |",
            "",
            f"gate promoted {promoted} of {len(results)} seeds; bad candidate rejected in {bad} of {len(results)}",
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=ROOT / "var" / "demo")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--requests", type=int, default=160, help="training traffic replayed through the proxy")
    ap.add_argument("--v0-steps", type=int, default=30)
    ap.add_argument("--epochs", type=float, default=2.0)
    # DPO at 3e-4 removed refusals across the board (run 5: harmful refusal 56.7% -> 3.3% on the suite; on run
    # 7's pairs, with the NLL term but no anchors, 46.7% -> 6.7% at 3 epochs). With the anchors too, 3e-4 for 2
    # epochs kept the most harmful refusals for the largest over-refusal drop among the isolated runs on run 7's
    # pairs (finetune/README.md); it still loses some on the gate's suite.
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument(
        "--sft-weight",
        type=float,
        default=1.0,
        help="NLL term on the chosen answers (finetune/configs/dpo.yaml: sft_weight)",
    )
    ap.add_argument(
        "--max-refuse-share",
        type=float,
        default=0.6,
        help="cap on the refusal-side share of the pairs (refuse_more, keep_refusing and caution anchors)",
    )
    ap.add_argument(
        "--min-refuse-share",
        type=float,
        default=0.55,
        help="floor on the same share: help_more pairs past it are dropped (issue 17: seed 2's set was 0.49 "
        "refusal-side and lost harmful refusals; seeds 0 and 1, at 0.575 and 0.556, gained)",
    )
    ap.add_argument("--beta", type=float, default=None, help="DPO beta (the shipped config's when not given)")
    ap.add_argument(
        "--harmful-share",
        type=float,
        default=0.5,
        help="share of harmful requests in the replayed traffic (the rest split between benign and "
        "scary-but-benign): enough unsafe compliances for the 'refuse more' side to balance "
        "the 'help more' side near 1:1",
    )
    ap.add_argument("--fresh", action="store_true", help="delete WORK first (keeps nothing cached)")
    ap.add_argument(
        "--correct-share",
        type=float,
        default=1.0,
        help="share of wrongly refused benign prompts the simulated reviewer writes an answer for "
        "(the rest go to candidate sampling from the deployed model)",
    )
    ap.add_argument(
        "--caution-anchors",
        type=int,
        help="PairOptions.caution_anchors: requests the rails refused, asked again under the caution "
        "instruction (0 = off; default PairOptions' 40, 20 before issue 17's seed-0 rerun; run 11 ran without them)",
    )
    ap.add_argument(
        "--triage",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the triage classifier in the proxy and the loop (the shipped default)",
    )
    ap.add_argument("--seed", type=int, default=0, help="traffic draw, DPO and sampling seed of one run")
    ap.add_argument(
        "--seeds",
        help="comma-separated seeds: one full run per seed (WORK/seed-N; --jobs of them at a time), then the summary "
        "over them (WORK/demo_seeds.md): mean and spread through the proxy, seeds promoted, bad candidate",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="with --seeds: seeds run side by side (each on its own port from --port up; three used 10-12 GB together)",
    )
    a = ap.parse_args()
    if a.seeds:
        return run_seeds(a, [int(x) for x in a.seeds.split(",")])
    import torch

    torch.manual_seed(a.seed)

    from finetune.config import load_config
    from finetune.cycle import CycleOptions, run_cycle
    from finetune.evaluate import EvalOptions, Suites, compare, deployed_view
    from finetune.gates import decide
    from finetune.pairs import load_rows
    from finetune.registry import Registry
    from finetune.report import write_report
    from finetune.train import train_dpo
    from guard.backends.prepare import prepare_default_model
    from guard.settings import DEFAULT_MODEL, load_settings
    from guard.store.db import make_engine, upgrade

    t_start = time.perf_counter()
    work = a.work.resolve()
    if a.fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    reg = Registry(work / "models", DEFAULT_MODEL)
    if CAUTIOUS not in reg.store.versions(DEFAULT_MODEL):
        base = prepare_default_model(settings).path
        log(f"training the over-cautious deployment from {base} ({a.v0_steps} steps)")
        merged = make_cautious(base, work / "v0-train", a.v0_steps)
        reg.add(
            merged, None, {"note": "demo: deliberately over-cautious deployment (SFT on refusals)"}, version=CAUTIOUS
        )
    reg.promote(CAUTIOUS)
    triage_src = settings.triage_dir.resolve()
    if a.triage and not triage_src.is_dir():
        raise SystemExit(f"no triage model at {triage_src}: run `guard triage build` (or pass --no-triage)")
    triage = a.triage
    if triage and not (work / "triage").exists():
        (work / "triage").symlink_to(triage_src)
    db_url = f"sqlite:///{work / 'guard.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    proxy = start_proxy(work, a.port, triage)
    result: dict[str, Any] = {"triage": triage, "seed": a.seed, "started": datetime.now(UTC).isoformat()}
    try:
        held = [p for k in tr.KINDS for p in tr.prompts(k) if p.held_out]
        log(f"before: {len(held)} held-out prompts through the proxy (serving {CAUTIOUS})")
        before = measure(a.port, DEFAULT_MODEL, held)
        log(f"before: over-refusal {before['over_refusal']:.1%}, harmful refusal {before['harmful_refusal']:.1%}")
        wait_recorded(engine, len(held))
        window_start = datetime.now(UTC)
        from finetune.collect import Watermark

        Watermark(work / "finetune", DEFAULT_MODEL).commit(window_start)  # held-out exchanges stay out of training

        rest = (1.0 - a.harmful_share) / 2
        mix = {"benign": rest, "scary_benign": rest, "harmful": a.harmful_share}
        pool = tr.traffic(a.requests * 3, seed=1 + a.seed, mix=mix)
        train_traffic = [p for p in pool if not p.held_out][: a.requests]
        log(f"replaying {len(train_traffic)} requests of training traffic")
        t0 = time.perf_counter()
        served = [ask(a.port, DEFAULT_MODEL, p.text) for p in train_traffic]
        result["replay_s"] = time.perf_counter() - t0
        result["traffic_refusal_rate"] = sum(s["refused"] for s in served) / len(served)
        wait_recorded(engine, len(held) + len(train_traffic))
        kinds = {p.text: p.kind for p in pool}
        corrections = reviewer_corrections(prepare_default_model(settings).path, train_traffic, a.correct_share)
        result["reviewer_corrections"] = len(corrections)
        result["reviews"] = review(engine, window_start, kinds, corrections)
        log(f"reviews: {result['reviews']}")

        opts = CycleOptions(
            model=DEFAULT_MODEL,
            state_dir=work / "finetune",
            models_root=work / "models",
            db_url=db_url,
            rails_dir=settings.rails_dir,
            triage_dir=work / "triage" if triage else None,
            min_pairs=10,
            settle=timedelta(0),
            dpo=load_config(
                None, epochs=a.epochs, learning_rate=a.lr, sft_weight=a.sft_weight, beta=a.beta, seed=a.seed
            ),
            datasets_dir=settings.datasets_dir,
        )
        opts.pairs.candidates = 6
        opts.pairs.max_refuse_share = a.max_refuse_share
        opts.pairs.min_refuse_share = a.min_refuse_share
        if a.caution_anchors is not None:
            opts.pairs.caution_anchors = a.caution_anchors
        result["dpo"] = opts.dpo.model_dump()
        t0 = time.perf_counter()
        res = run_cycle(opts, log=log)
        result["cycle"] = {
            "status": res.status,
            "message": res.message,
            "version": res.version,
            "timings": res.timings,
            "wall_s": time.perf_counter() - t0,
            "run_dir": str(res.run_dir),
        }
        log(f"cycle: {res.status}: {res.message}")
        if res.run_dir is not None and (res.run_dir / "report" / "report.json").is_file():
            rep = json.loads((res.run_dir / "report" / "report.json").read_text())
            result["gate_eval"] = {
                k: {m: v for m, v in rep[k].items() if m not in ("samples", "outcomes")}
                for k in ("current", "candidate")
            } | {"drift": rep["drift"], "context": rep.get("context"), "verdict": rep.get("verdict")}
        result["pairs_manifest"] = (
            json.loads((res.run_dir / "pairs" / "manifest.json").read_text()) if res.run_dir else None
        )

        if res.status == "promoted":
            log("waiting for the proxy to hot-swap")
            for _ in range(60):
                ask(a.port, DEFAULT_MODEL, "Hello!")
                time.sleep(2)
                from guard.store.query import fetch_records

                recent = fetch_records(engine, since=datetime.now(UTC) - timedelta(seconds=5))
                if any(r.model_version == res.version for r in recent):
                    break
        after = measure(a.port, DEFAULT_MODEL, held)
        log(f"after: over-refusal {after['over_refusal']:.1%}, harmful refusal {after['harmful_refusal']:.1%}")
        wait_recorded(engine, 2 * len(held) + len(train_traffic))
        from guard.store.query import fetch_record

        versions = {
            fetch_record(engine, r["exchange_id"]).model_version
            for r in after["rows"]
            if r["exchange_id"] and fetch_record(engine, r["exchange_id"])
        }
        result.update(before=before, after=after, after_served_versions=sorted(v for v in versions if v))

        if res.run_dir is not None and (res.run_dir / "pairs" / "train.jsonl").is_file():
            log("training the deliberately bad candidate (chosen and rejected swapped)")
            cur = reg.store.version_dir(DEFAULT_MODEL, CAUTIOUS)
            bad = train_dpo(
                cur, flipped(load_rows(res.run_dir / "pairs" / "train.jsonl")), opts.dpo, work / "bad-train"
            )
            view = deployed_view(opts.eval, opts.rails_dir, opts.triage_dir)
            rep = compare(
                cur,
                bad.merged_dir,
                Suites.default(opts.datasets_dir, res.run_dir / "pairs" / "eval.jsonl"),
                shipped().with_head(HEAD_THRESHOLD).batch(view.triage if view is not None else None),
                EvalOptions(),
                view,
            )
            verdict = decide(rep, opts.gates)
            write_report(rep, verdict, work / "bad-report")
            result["bad_candidate"] = {
                "passed_gate": verdict.passed,
                "reasons": verdict.reasons,
                "candidate_benign_refusal": rep["candidate"]["benign_refusal_rate"],
                "current_benign_refusal": rep["current"]["benign_refusal_rate"],
            }
            log(f"bad candidate: {'PASSED (bad!)' if verdict.passed else 'rejected'}: {verdict.reasons}")
    finally:
        proxy.terminate()
        proxy.wait(30)
    result["total_wall_s"] = time.perf_counter() - t_start
    (work / "demo_result.json").write_text(json.dumps(result, indent=2, default=str))
    b, f = result["before"], result["after"]
    lines = [
        "| measured through the proxy, held-out prompts | before | after |",
        "|---|---|---|",
        f"| over-refusal (benign + scary-but-benign) | {b['over_refusal']:.1%} | {f['over_refusal']:.1%} |",
        f"| scary-but-benign refused | {b['scary_benign_refusal']:.1%} | {f['scary_benign_refusal']:.1%} |",
        f"| harmful refused | {b['harmful_refusal']:.1%} | {f['harmful_refusal']:.1%} |",
        *_gate_lines(result.get("gate_eval")),
        "",
        f"held-out sizes: {b['n']}; cycle: {result['cycle']['status']}; "
        f"bad candidate passed gate: {result.get('bad_candidate', {}).get('passed_gate')}; "
        f"total {result['total_wall_s'] / 60:.1f} min",
    ]
    (work / "demo_result.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
