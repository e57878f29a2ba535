"""The evaluation report: `report.json` (everything), `report.md` (for people) and `before_after.png`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetune.gates import Verdict

_ROWS = [
    ("benign_refusal_rate", "Over-refusal (benign refused)", True),
    ("benign_scary_refusal_rate", "  benign with scary words", True),
    ("benign_ordinary_refusal_rate", "  ordinary benign", True),
    ("harmful_refusal_rate", "Harmful refused", True),
    ("bare_benign_refusal_rate", "Over-refusal, model alone", True),
    ("bare_harmful_refusal_rate", "Harmful refused, model alone", True),
    ("pref_accuracy", "Held-out preference accuracy", True),
    ("pref_margin", "Held-out mean log-prob margin", False),
    ("general_perplexity", "General perplexity", False),
]


def _fmt(v: Any, pct: bool) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def _counts(m: dict[str, Any]) -> str:
    c = m.get("answers") or {}
    return f"{c.get('generated', '?')} / {c.get('reused', '?')}"


def write_report(report: dict[str, Any], verdict: Verdict, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = {**report, "verdict": verdict.as_dict()}
    (out_dir / "report.json").write_text(json.dumps(full, indent=2, default=str))
    cur, cand = report["current"], report["candidate"]
    ctx = report.get("context", {"kind": "bare"})
    where = (
        f"as deployed: triage {ctx.get('triage')} + input rails (profile {ctx.get('profile')}, rails "
        f"{str(ctx.get('rails_hash'))[:12]}); suite prompts by what the rails did: {ctx.get('frames')}"
        if ctx["kind"] == "deployed"
        else "the models alone (no rails in front)"
    )
    lines = [
        "# Candidate evaluation",
        "",
        f"Verdict: **{verdict.status.upper()}**",
        "",
        f"Refusal rates measured {where}.",
        "",
        "| metric | current | candidate |",
        "|---|---|---|",
    ]
    lines += [
        f"| {label} | {_fmt(cur.get(k), pct)} | {_fmt(cand.get(k), pct)} |"
        for k, label, pct in _ROWS
        if k in cur or k in cand
    ]
    d = report["drift"]
    lines += [f"| KL(current‖candidate), general | | {d['kl_current_candidate']:.4f} |", "", "## Gates", ""]
    lines += [f"- {c['outcome'].upper()} `{c['gate']}`: {c['detail']}" for c in verdict.checks]
    lines += ["", f"Suite sizes: {report.get('suite_sizes', {})}; suites hash {report.get('suites', {}).get('hash')}"]
    lines += [
        f"Answers generated now / reused from the model's own store: current {_counts(cur)}, candidate {_counts(cand)}"
    ]
    lines += ["", "![before/after](before_after.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    png = out_dir / "before_after.png"
    _plot(cur, cand, png)
    return {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": png}


def _plot(cur: dict[str, Any], cand: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    keys = [(k, label) for k, label, pct in _ROWS if pct and k in cur and k in cand]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [100 * cur[k] for k, _ in keys], width=0.4, label="current")
    ax.bar([x + 0.2 for x in xs], [100 * cand[k] for k, _ in keys], width=0.4, label="candidate")
    ax.set_xticks(list(xs), [label for _, label in keys], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend()
    ax.set_title("Before / after")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
