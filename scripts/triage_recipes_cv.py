"""Head recipes compared by leaving training sources out (issue 14): a way to choose a recipe without the test split.

The shipped encoder's served int8 embeddings (through the cache `guard triage refit` fills) are fitted with each
recipe's heads while whole public training sources are held out, five folds, each holding out about one source of
every group (benign, harmful, attack, hate content, answers); thresholds come from the real `calib` split as
shipped; each held-out source is scored on its first window. Reported per recipe, mean over held-out sources:
harmful recall, benign flag rate, hate F1, attack recall, refusal accuracy. `--test` also fits the recipe on all of
`train` and prints the held-out test targets, to see whether the cross-validation predicted them.

The encoder was tuned on every training source, so the cross-validated figures are optimistic; they compare
head recipes, they do not estimate held-out quality.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python scripts/triage_recipes_cv.py --test
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch  # noqa: F401  (before the data builder, which imports the generator's torch-free modules)

from finetune.triage.data.build import training_split
from finetune.triage.data.sources import source_table
from finetune.triage.heads import Heads
from finetune.triage.refit import Embedded, embed, fit_calibrated, served_scores
from finetune.triage.scoring import is_look_alike_source, quality_targets
from guard.settings import load_settings
from guard.taxonomy import ATTACKS, HARMFUL, INPUT_LABELS

RECIPES: dict[str, dict[str, Any]] = {
    "shipped": {},
    "seed 7": {"seed": 7},
    "benign rows x2": {"benign_weight": 2.0},
    "sources balanced (1/n)^0.5": {"balance": 0.5},
    "sources balanced 1/n": {"balance": 1.0},
    "balanced^0.5 + benign x2": {"balance": 0.5, "benign_weight": 2.0},
    "hidden 512 and 20 epochs": {"hidden": 512, "epochs": 20},
    "24 epochs": {"epochs": 24},
}
H, A = len(HARMFUL), len(ATTACKS)


def source_group(rows: list[dict]) -> str:
    src = source_table().get(rows[0]["source"])
    if sum(r.get("kind") == "response" for r in rows) > len(rows) / 2:
        return "answers"
    if src is not None and src.kind == "content":
        return "hate"
    if sum(bool(set(r["labels"]) & set(ATTACKS)) for r in rows) > 0.3 * len(rows):
        return "attack"
    if sum(bool(set(r["labels"]) & set(HARMFUL)) for r in rows) > 0.3 * len(rows):
        return "harmful"
    return "benign"


def folds_of(train: list[dict], k: int) -> tuple[list[list[str]], dict[str, str]]:
    by_source: dict[str, list[dict]] = {}
    for r in train:
        by_source.setdefault(r["source"], []).append(r)
    group = {s: source_group(rows) for s, rows in by_source.items() if not s.startswith("synth:")}
    folds: list[list[str]] = [[] for _ in range(k)]
    for offset, g in enumerate(sorted(set(group.values()))):
        for j, s in enumerate(sorted(s for s in group if group[s] == g)):
            folds[(j + offset) % k].append(s)
    return folds, group


def weights(rows: list[dict], recipe: dict[str, Any]) -> np.ndarray:
    w = np.ones(len(rows))
    if alpha := recipe.get("balance", 0.0):
        n = Counter(r["source"] for r in rows)
        w = np.array([n[r["source"]] ** -alpha for r in rows])
        w = w / w.mean()
    benign = np.array([not r["labels"] and r.get("kind", "prompt") == "prompt" for r in rows])
    return np.where(benign, w * recipe.get("benign_weight", 1.0), w)


def fit(
    rows: list[dict], emb: Embedded, calib: list[dict], recipe: dict[str, Any], train_cfg: dict
) -> tuple[Heads, dict[str, float]]:
    """The recipe's heads on `rows` (first windows `emb.first`) and their thresholds on `calib`, as a refit does."""
    weighted = [{**r, "weight": w} for r, w in zip(rows, weights(rows, recipe), strict=True)]
    cfg = {
        **train_cfg,
        "head_hidden": recipe.get("hidden", 256),
        "head_epochs": recipe.get("epochs", 12),
        "seed": recipe.get("seed", 13),
    }
    return fit_calibrated(weighted, calib, emb, cfg)


def held_out_scores(
    rows: list[dict], probs: np.ndarray, refusal: np.ndarray, thr: dict, group: str, look_alike: bool = False
) -> dict:
    over = probs >= np.array([thr[lab] for lab in INPUT_LABELS])
    harm_fired, attack_fired = over[:, :H].any(1), over[:, H : H + A].any(1)
    prompt = np.array([r.get("kind", "prompt") == "prompt" for r in rows])
    harm = np.array([bool(set(r["labels"]) & set(HARMFUL)) for r in rows])
    attack = np.array([bool(set(r["labels"]) & set(ATTACKS)) for r in rows])
    if group == "answers":
        truth = np.array([bool(r.get("refusal")) for r in rows])
        return {"refusal_accuracy": float(((refusal >= thr["refusal"]) == truth).mean())}
    if group == "hate":
        tp = float((harm_fired & harm).sum())
        return {"hate_f1": 2 * tp / max(1.0, float(harm_fired.sum() + harm.sum()))}
    out = {}
    benign = prompt & ~harm & ~attack
    for name, mask, fired in (
        ("harm_recall", prompt & harm, harm_fired),
        ("attack_recall", prompt & attack, attack_fired),
        ("benign_flagged", benign, harm_fired | attack_fired),
        # The look-alike target's stand-in (CoCoNot's benign rows): the flags that calibration on WildGuard lets
        # through on other look-alikes are what the test split punished recipes for and plain CV could not see.
        ("look_alike_flagged", benign if look_alike else np.zeros_like(benign), harm_fired | attack_fired),
    ):
        if mask.sum() >= 20:
            out[name] = float(fired[mask].mean())
    return out


def cross_validate(split: dict, emb: Embedded, recipe: dict, train_cfg: dict, k: int) -> dict[str, float]:
    train = split["train"]
    folds, group = folds_of(train, k)
    per: dict[str, list[float]] = {}
    for fold in folds:
        keep = np.array([r["source"] not in fold for r in train])
        rows = [r for r, m in zip(train, keep, strict=True) if m]
        heads, thr = fit(rows, Embedded(emb.first[keep], emb.windows), split["calib"], recipe, train_cfg)
        for source in fold:
            ix = [i for i, r in enumerate(train) if r["source"] == source]
            probs, refusal = served_scores(heads, [emb.first[i : i + 1] for i in ix])
            scores = held_out_scores(
                [train[i] for i in ix], probs, refusal, thr, group[source], is_look_alike_source(source)
            )
            for name, v in scores.items():
                per.setdefault(name, []).append(v)
    return {name: round(float(np.mean(v)), 4) for name, v in per.items()}


def test_targets(split: dict, emb: Embedded, recipe: dict, train_cfg: dict) -> dict[str, Any]:
    heads, thr = fit(split["train"], emb, split["calib"], recipe, train_cfg)
    return _brief(quality_targets(split["test"], *served_scores(heads, emb.windows["test"]), list(INPUT_LABELS), thr))


def _brief(m: dict) -> dict[str, Any]:
    h, a = m["harmful_requests"], m["attacks"]
    return {
        "harm_recall_fpr": [h["recall"], h["fpr"]],
        "harm_recall_at_fpr_0.05": h["recall_at_fpr_0.05"],
        "look_alikes": m["look_alikes_flagged"]["flag_rate"],
        "hate_f1": m["hateful_vs_contrasts"]["f1"],
        "attack_recall_fpr": [a["recall"], a["fpr"]],
        "refusal_f1": m.get("refusal", {}).get("real_answers", {}).get("f1"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=Path("guard/triage/artifact"))
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names of RECIPES")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--test", action="store_true", help="also the held-out test targets of each recipe")
    ap.add_argument("--test-seeds", default="", help="with --test: also fit each recipe with these seeds (a,b,...)")
    a = ap.parse_args()
    if unknown := [n for n in a.recipes.split(",") if n not in RECIPES]:
        ap.error(f"unknown recipe {unknown[0]!r}; known: {', '.join(RECIPES)}")
    settings = load_settings()
    train_cfg = json.loads((a.artifact / "triage.json").read_text())["train"]
    split, _ = training_split(train_cfg, settings.datasets_dir)
    scored = {s: split[s] for s in ("calib", "test")}
    emb = embed(a.artifact, split["train"], scored, cache_dir=settings.home / "cache" / "triage", threads=1)
    print(json.dumps({"folds": folds_of(split["train"], a.folds)[0]}))
    for name in a.recipes.split(","):
        t0 = time.time()
        line: dict[str, Any] = {"recipe": name, "cv": cross_validate(split, emb, RECIPES[name], train_cfg, a.folds)}
        if a.test:
            line["test"] = test_targets(split, emb, RECIPES[name], train_cfg)
            for seed in [int(x) for x in a.test_seeds.split(",") if x]:
                line[f"test seed {seed}"] = test_targets(split, emb, {**RECIPES[name], "seed": seed}, train_cfg)
        line["seconds"] = round(time.time() - t0)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
