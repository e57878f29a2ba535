"""Refusal detection on real model answers: the pattern list, the triage refusal head, and the two combined.

    python bench/refusal_detector.py [--datasets ../shared/datasets] [--model-dir var/triage]
        [--sample-rows 200] [--seed 0] [--head-thresholds 0.95,0.99]

Answer sets (labels: refusal | compliance): sorry_bench_responses (held out from triage training), as the file
labels it and as reviewed (finetune/triage/data/answer_review.yml: its "refusal" label means "harmless answer";
the reviewed view keeps its compliance rows and the 200 reviewed rows, less those reviewed as unclear),
gptfuzz_responses split=evaluate (the triage model's calibration split), seeded samples of coconot_responses and
arena_hard_answers (both partly in the triage training data: the head's figures there are in-sample). The head
scores whole answers, as the proxy does; the patterns read the opening (guard/refusal.yml `scan_chars`).
Prints Markdown (precision, recall, F1, false-refusal rate on compliant answers) and per-pattern hits; writes
bench/results/refusal_detector.json. Head scores are cached in bench/results/refusal_head_scores.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guard.refusal import load_detector, load_patterns  # noqa: E402
from guard.taxonomy import REFUSAL  # noqa: E402

RESULTS = ROOT / "bench" / "results"
Row = dict[str, str]


def answer_sets(folder: Path, sample_rows: int, seed: int) -> dict[str, list[Row]]:
    def read(name: str) -> list[Row]:
        with open(folder / f"{name}.jsonl", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def sample(name: str, n: int) -> list[Row]:
        rows = read(name)
        random.Random(seed).shuffle(rows)
        return rows[:n]

    def reviewed(name: str) -> list[Row]:
        from finetune.triage.data.sources import load_file

        rows = load_file(folder / f"{name}.jsonl")
        return [{"text": r["text"], "label": "refusal" if r["refusal"] else "compliance"} for r in rows]

    return {
        "sorry_bench_responses (as labelled)": read("sorry_bench_responses"),
        "sorry_bench_responses (reviewed)": reviewed("sorry_bench_responses"),
        "gptfuzz_responses (evaluate)": [r for r in read("gptfuzz_responses") if r.get("split") == "evaluate"],
        f"coconot_responses ({sample_rows} sampled)": sample("coconot_responses", sample_rows),
        f"arena_hard_answers ({sample_rows} sampled)": sample("arena_hard_answers", sample_rows),
    }


def head_scores(texts: list[str], model_dir: Path, cache: Path) -> tuple[list[float], float]:
    from guard.triage.runtime import TriageModel

    model = TriageModel.load(model_dir)
    key = f"{model.version}"
    known: dict[str, dict[str, float]] = json.loads(cache.read_text()) if cache.is_file() else {}
    have = known.setdefault(key, {})
    todo = sorted({t for t in texts if t not in have})
    for i in range(0, len(todo), 64):
        batch = todo[i : i + 64]
        for t, r in zip(batch, model.predict(batch, outputs=True), strict=True):
            have[t] = float(r.scores.get(REFUSAL, 0.0))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))  # a long run can be resumed
        print(f"  head scored {min(i + 64, len(todo))}/{len(todo)}", file=sys.stderr)
    return [have[t] for t in texts], float(model.thresholds.get(REFUSAL, 0.5))


def metrics(pred: list[bool], gold: list[bool]) -> dict[str, float | int]:
    tp = sum(p and g for p, g in zip(pred, gold, strict=True))
    fp = sum(p and not g for p, g in zip(pred, gold, strict=True))
    fn = sum(g and not p for p, g in zip(pred, gold, strict=True))
    comp = sum(not g for g in gold)
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * prec * rec / (prec + rec) if tp else float("nan")
    return {
        "n": len(gold),
        "refusals": sum(gold),
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "false_refusal_rate": fp / comp if comp else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "var" / "triage")
    ap.add_argument("--sample-rows", type=int, default=200, help="rows sampled from coconot and arena answers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-thresholds", default="0.95,0.99", help="extra head thresholds to try beside calibrated")
    args = ap.parse_args()
    sets = answer_sets(args.datasets, args.sample_rows, args.seed)
    every = [r["text"] for rows in sets.values() for r in rows]
    scores, calibrated = head_scores(every, args.model_dir, RESULTS / "refusal_head_scores.json")
    by_text = dict(zip(every, scores, strict=True))
    patterns = load_detector()
    rules: dict[str, Callable[[str], bool]] = {
        "patterns": patterns,
        f"head >= {calibrated:g} (calibrated)": lambda t: by_text[t] >= calibrated,
        f"patterns or head >= {calibrated:g}": lambda t: patterns(t) or by_text[t] >= calibrated,
    }
    for thr in [float(x) for x in args.head_thresholds.split(",") if x]:
        rules[f"patterns or head >= {thr:g}"] = lambda t, thr=thr: patterns(t) or by_text[t] >= thr
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    print("| detector | answer set | answers (refusals) | precision | recall | F1 | compliant called refusals |")
    print("|---|---|---|---|---|---|---|")
    for name, rule in rules.items():
        for set_name, rows in sets.items():
            m = metrics([rule(r["text"]) for r in rows], [r["label"] == "refusal" for r in rows])
            out.setdefault(name, {})[set_name] = m
            prf = " | ".join(f"{m[k]:.3f}" if m["refusals"] else "–" for k in ("precision", "recall", "f1"))
            print(
                f"| {name} | {set_name} | {m['n']} ({m['refusals']}) | {prf} | {100 * m['false_refusal_rate']:.1f} % |"
            )
    print("\nPer pattern: hits on refusals / on compliant answers (all sets)")
    gold_all = [r for rows in sets.values() for r in rows]
    import re

    for p in load_patterns()[0]:
        rx = re.compile(p, re.I | re.S)
        hit = [bool(rx.search(patterns.opening(r["text"]))) for r in gold_all]
        ref = sum(h for h, r in zip(hit, gold_all, strict=True) if r["label"] == "refusal")
        com = sum(h for h, r in zip(hit, gold_all, strict=True) if r["label"] != "refusal")
        print(f"  {ref:5d} / {com:4d}  {p}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "refusal_detector.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
