"""`guard triage eval`: score any JSONL of {text, label} with the built model and report.

Labels may be a taxonomy label, a coarse class (`harmful`, `injection`, `benign`, ...), or a list of them.
Reports per-class precision/recall/F1, FPR on benign rows, a confusion matrix over coarse classes, the threshold
that meets a target FPR, and PR curves (PNG), as JSON and Markdown. Split files written by `guard triage train
--data-out` (rows with `labels`, `source`, `kind`) also get the issue's quality targets, measured on the served
model (int8, sliding windows) rather than the PyTorch figures `train` prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from finetune.triage.scoring import prf, threshold_for_fpr
from guard.taxonomy import ADVICE, HARMFUL

ALIASES = {"injection": "prompt_injection", "safe": "benign", "unsafe": "harmful"}


class EvalInputError(ValueError):
    """The evaluation file is missing or malformed; the message says where."""


def coarse_classes(labels: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    classes: dict[str, tuple[str, ...]] = {"harmful": HARMFUL, "advice": ADVICE}
    classes.update({lab: (lab,) for lab in labels})
    return classes


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise EvalInputError(f"no such file: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):  # not splitlines: U+2028 is text
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row["label"] if "label" in row else row["labels"]
            labels = [label] if isinstance(label, str) else list(label)
        except (ValueError, KeyError, TypeError):
            raise EvalInputError(f"{path}:{n}: expected a JSON object with 'text' and 'label'") from None
        extra = {k: row[k] for k in ("source", "kind", "refusal") if k in row}
        mapped = [ALIASES.get(lab, lab) for lab in labels]
        rows.append({"text": str(text), "labels": [lab for lab in mapped if lab != "benign"], **extra})
    if not rows:
        raise EvalInputError(f"{path}: no rows")
    return rows


def evaluate(
    rows: list[dict],
    probs: np.ndarray,
    model_labels: tuple[str, ...],
    thresholds: dict[str, float],
    target_fpr: float = 0.05,
) -> dict:
    classes = coarse_classes(model_labels)
    col = {lab: i for i, lab in enumerate(model_labels)}
    thr = np.array([thresholds[lab] for lab in model_labels])
    over = probs >= thr
    benign = np.array([not r["labels"] for r in rows])
    present = sorted({lab for r in rows for lab in r["labels"]} - {"benign"})
    unknown = [lab for lab in present if lab not in classes]
    report: dict = {
        "rows": len(rows),
        "benign_rows": int(benign.sum()),
        "unknown_labels": unknown,
        "target_fpr": target_fpr,
        "classes": {},
    }
    for name in [p for p in present if p in classes]:
        members = [col[m] for m in classes[name]]
        truth = np.array([any(lab == name or lab in classes[name] for lab in r["labels"]) for r in rows])
        score = probs[:, members].max(axis=1)
        pred = np.asarray(over[:, members].any(axis=1))
        t = threshold_for_fpr(score, benign, target_fpr)
        report["classes"][name] = {
            **prf(pred, truth),
            "fpr_on_benign": _rate(pred, benign),
            "threshold_at_target_fpr": round(t, 4),
            "recall_at_target_fpr": _rate(np.asarray(score >= t), truth),
        }
    flagged = np.asarray(over.any(axis=1))
    report["benign_fpr_any_label"] = _rate(flagged, benign)
    report["confusion"] = _confusion(rows, probs, over, model_labels)
    report["_curves"] = {name: _pr_curve(probs, rows, classes[name], name, col) for name in report["classes"]}
    return report


def _rate(pred: np.ndarray, mask: np.ndarray) -> float:
    return round(float(pred[mask].mean()), 4) if mask.any() else float("nan")


def _coarse(label: str) -> str:
    return "harmful" if label in HARMFUL else "advice" if label in ADVICE else label


def _confusion(rows: list[dict], probs: np.ndarray, over: np.ndarray, labels: tuple[str, ...]) -> dict:
    matrix: dict[str, dict[str, int]] = {}
    for i, r in enumerate(rows):
        truth = _coarse(r["labels"][0]) if r["labels"] else "benign"
        hits = np.flatnonzero(over[i])
        pred = "benign" if len(hits) == 0 else _coarse(labels[hits[np.argmax(probs[i, hits])]])
        matrix.setdefault(truth, {}).setdefault(pred, 0)
        matrix[truth][pred] += 1
    return matrix


def _pr_curve(
    probs: np.ndarray, rows: list[dict], members: tuple[str, ...], name: str, col: dict[str, int]
) -> dict[str, list[float]]:
    truth = np.array([any(lab == name or lab in members for lab in r["labels"]) for r in rows])
    score = probs[:, [col[m] for m in members]].max(axis=1)
    order = np.argsort(-score)
    tp = np.cumsum(truth[order])
    k = np.arange(1, len(order) + 1)
    precision = tp / k
    recall = tp / max(1, truth.sum())
    step = max(1, len(k) // 200)
    return {"precision": precision[::step].round(4).tolist(), "recall": recall[::step].round(4).tolist()}


def write_report(report: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = report.pop("_curves")
    paths = [out_dir / "eval.json", out_dir / "eval.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(_markdown(report))
    if curves:
        paths.append(_plot(curves, out_dir / "pr_curves.png"))
    return paths


def _markdown(report: dict) -> str:
    lines = [
        f"# Triage evaluation ({report['rows']} rows, {report['benign_rows']} benign)",
        "",
        f"Benign FPR (any label): {report['benign_fpr_any_label']}",
        "",
        f"| class | precision | recall | F1 | support | FPR on benign | threshold @ FPR {report['target_fpr']} "
        "| recall there |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["classes"].items():
        lines.append(
            f"| {name} | {m['precision']} | {m['recall']} | {m['f1']} | {m['support']} | "
            f"{m['fpr_on_benign']} | {m['threshold_at_target_fpr']} | {m['recall_at_target_fpr']} |"
        )
    preds = sorted({p for row in report["confusion"].values() for p in row})
    lines += [
        "",
        "## Confusion (rows: truth, columns: prediction)",
        "",
        "| truth | " + " | ".join(preds) + " |",
        "|---" * (len(preds) + 1) + "|",
    ]
    for truth, row in sorted(report["confusion"].items()):
        lines.append(f"| {truth} | " + " | ".join(str(row.get(p, 0)) for p in preds) + " |")
    targets = report.get("quality_targets") or {}
    if targets:
        lines += [
            "",
            "## Quality targets (held-out split file, shipped thresholds)",
            "",
            "| target | figures |",
            "|---|---|",
        ]
        lines += [f"| {name} | {json.dumps(m)} |" for name, m in targets.items() if name != "per_source_flag_rate"]
        lines += [
            "",
            "## Flag rate per source (any harmful or attack label)",
            "",
            "| source | rows | flagged |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v['rows']} | {v['flag_rate']} |" for k, v in targets["per_source_flag_rate"].items()]
    tiers = report.get("rails_tiers")
    if tiers:
        lines += [
            "",
            f"## Benign prompts per tier of `{tiers['rails_dir']}` profile `{tiers['profile']}`",
            "",
            "| source | rows | refuse | caution | allow |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {s} | {d['rows']} | {d['refuse']} | {d['caution']} | {d['allow']} |"
            for s, d in tiers["per_source"].items()
        ]
    for kind, errors in (report.get("worst_errors") or {}).items():
        lines += [
            "",
            f"## Worst {kind.replace('_', ' ')}",
            "",
            "| source | truth | top label | margin | text |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {e['source']} | {e['truth']} | {e['top_label']} | {e['margin']} | {e['text'].replace('|', '/')} |"
            for e in errors
        ]
    if report["unknown_labels"]:
        lines += ["", f"Labels not in the taxonomy (ignored): {', '.join(report['unknown_labels'])}"]
    return "\n".join(lines) + "\n"


def _plot(curves: dict[str, dict[str, list[float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, c in curves.items():
        ax.plot(c["recall"], c["precision"], label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
