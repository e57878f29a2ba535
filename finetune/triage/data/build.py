"""Assemble the training set: public sources (by `sources.yml`) + a capped share of the generator, and a manifest.

Splits are by source: a file (or a sub-source named in `roles_by`) is wholly train, calib or test, so the
held-out figures are on sources the model and its thresholds never saw. The generator covers only what the public
data lacks (`GENERATOR_KEEP`); its own rows are split by slot entry (`group`), as before, and capped at
`GENERATOR_SHARE` of the training prompts.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

from finetune.triage.data.broad import broad_rows
from finetune.triage.data.secret_asks import secret_ask_rows
from finetune.triage.data.sources import file_sha256, load_file, source_table
from finetune.triage.data.synth import style, synth_answers, synth_prompts

GENERATOR_VERSION = "8"
MAX_CHARS = 1200  # training sees at most one window; long sources are cropped around what matters
GENERATOR_SHARE = 0.30  # at most this share of the training prompts comes from the generator
# What the public data lacks: personal regulated-advice requests and their general-information twins, answers
# and documents twinned by addressee, documents carrying instructions, system-prompt extraction and asks for the
# secrets or users' data an assistant guards (each with benign twins), benign prompts with scary words, short
# multi-turn context, and short stock refusals. And harmful requests for the categories the public training
# sources barely hold (classifier v15, trained without them, had 35 cbrn and 158 cyber requests to learn from and
# caught 37 % of HarmBench), with the jailbreak and injection shapes that the public attack sources lack (direct
# injections in chat, persona jailbreaks).
GENERATOR_KEEP = {
    "harm_request",
    "harm_task",
    "harm_behaviour",
    "harm_chat",
    "harm_act",
    "jailbreak",
    "jailbreak_v5",
    "persona_jb",
    "persona",
    "direct_inj",
    "extraction_v5",
    "advice",
    "info",
    "addr_inj",
    "addr_reader",
    "own_ask",
    "code_clean",
    "code_inj",
    "doc_clean",
    "doc_clean_v6",
    "doc_inj",
    "doc_inj_v6",
    "doc_reader",
    "stdlib_doc",
    "sysprompt",
    "sysprompt_twin",
    "secret_ask",
    "secret_twin",
    "scary",
    "scary_idiom",
    "scary_task",
    "scary_word",
    "sec_benign",
    "sec_work",
    "adv_safe",
    "defensive",
    "definitions",
    "coping",
    "counter_prejudice",
    "public_facts",
    "games_sport",
    "harm_in_context",
    "ctx_ask",
    "response",
}


def _bucket(key: str) -> float:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def generator_role(row: dict) -> str:
    b = _bucket(row["group"])
    return "test" if b < 0.2 else "calib" if b > 0.88 else "train"


def generator_rows(seed: int, scale: int) -> list[dict]:
    rng = random.Random(seed)
    rows = synth_prompts(rng, scale) + synth_answers(rng, scale * 8)
    rows += broad_rows(random.Random(f"{seed}:broad"), scale, style)
    rows += _styled(
        secret_ask_rows(random.Random(f"{seed}:secret_asks"), 2 * scale), random.Random(f"{seed}:secret_style")
    )
    kept = [r for r in rows if r["source"].removeprefix("synth:") in GENERATOR_KEEP]
    for r in kept:
        r["role"] = generator_role(r)
    return kept


def _styled(rows: list[dict], rng: random.Random) -> list[dict]:
    """Typos and casing on three rows in four (`synth.style`), each row its `source` from its group."""
    for r in rows:
        if rng.random() < 0.75:
            r["text"] = style(rng, r["text"])
        r.update(kind="prompt", source="synth:" + r["group"].split(":", 1)[0])
    return rows


def _crop(row: dict, rng: random.Random) -> list[dict]:
    text, raw = row["text"], row.get("raw") or {}
    attack = raw.get("attack_text")
    if attack and attack in text:
        i = text.index(attack)
        lo = max(0, i - rng.randint(100, 500))
        return [{**row, "text": text[lo : i + len(attack) + rng.randint(50, 300)]}]
    if len(text) <= MAX_CHARS:
        return [row]
    if raw.get("request_text"):
        return [{**row, "text": text[-MAX_CHARS:]}]  # the request closes the row
    out = [{**row, "text": text[:MAX_CHARS]}]
    if not row["labels"] and row.get("kind") != "response":
        # A benign window from the middle: later windows of long inputs must stay quiet.
        start = rng.randint(MAX_CHARS // 2, len(text) - MAX_CHARS // 2)
        out.append({**row, "text": text[start : start + MAX_CHARS]})
    return out


def _cap(rows: list[dict], cap: int | None, rng: random.Random) -> list[dict]:
    """At most `cap` rows per label (benign counts as one label), sampled."""
    if cap is None:
        return rows
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(",".join(r["labels"]) or f"benign:{r.get('refusal')}", []).append(r)
    out: list[dict] = []
    for key in sorted(by_label):
        part = by_label[key]
        out += part if len(part) <= cap else rng.sample(part, cap)
    return out


def _cap_generator(rows: list[dict], rng: random.Random) -> list[dict]:
    public = sum(1 for r in rows if r["split"] == "train" and r["kind"] == "prompt" and not _is_synth(r))
    synth = [i for i, r in enumerate(rows) if r["split"] == "train" and r["kind"] == "prompt" and _is_synth(r)]
    limit = int(GENERATOR_SHARE / (1 - GENERATOR_SHARE) * public)
    if not public or len(synth) <= limit:  # without the public data the generator is all there is
        return rows
    drop = set(rng.sample(synth, len(synth) - limit))
    return [r for i, r in enumerate(rows) if i not in drop]


def _dup_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()[:300]


def _drop_leaks(rows: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Copies of held-out texts are dropped from the splits before them (test > calib > train).

    The same jailbreak is posted in several communities, the same stock prompt sits in several files: without
    this, a `test` row's twin would be trained on.
    """
    held: dict[str, set[str]] = {"test": set(), "calib": set()}
    for r in rows:
        if r["split"] in held:
            held[r["split"]].add(_dup_key(r["text"]))
    later = {"train": held["test"] | held["calib"], "calib": held["test"], "test": set()}
    kept = [r for r in rows if _dup_key(r["text"]) not in later[r["split"]]]
    dropped = Counter(r["split"] for r in rows) - Counter(r["split"] for r in kept)
    return kept, dict(sorted(dropped.items()))


def _is_synth(row: dict) -> bool:
    return row["source"].startswith("synth:")


def build_dataset(datasets_dir: Path | None, *, seed: int = 13, scale: int = 150) -> tuple[list[dict], dict]:
    """All rows (with `split`) and the manifest describing where they came from."""
    rows = generator_rows(seed, scale)
    manifest: dict = {"generator_version": GENERATOR_VERSION, "seed": seed, "scale": scale, "sources": {}}
    manifest["sources"]["synthetic"] = {"rows": len(rows), "sha256": _rows_hash(rows), "licence": "this project"}
    table = source_table()
    if datasets_dir is not None and datasets_dir.is_dir():
        for path in sorted(datasets_dir.glob("*.jsonl")):
            loaded = load_file(path)
            if not loaded:
                continue
            # Each source samples from its own generator: a change to one source's rows or mapping leaves every
            # other source's sample as it was (one shared generator reshuffled them all).
            rng = random.Random(f"{seed}:{path.stem}")
            kept = _cap(loaded, table[path.stem].cap, rng)
            cropped = [c for r in kept for c in _crop(r, rng)]
            manifest["sources"][path.stem] = {
                "file": path.name,
                "sha256": file_sha256(path),
                "licence": table[path.stem].licence,
                "rows_mapped": len(loaded),
                "rows_used": len(cropped),
                "roles": dict(Counter(r["role"] for r in cropped)),
                "labels": dict(Counter(_label_key(r) for r in cropped)),
            }
            rows += cropped
    for r in rows:
        r["split"] = r.pop("role")
        r.pop("raw", None)
    rows, manifest["dropped_as_duplicates"] = _drop_leaks([r for r in rows if r["split"] != "skip"])
    rows = _cap_generator(rows, random.Random(f"{seed}:generator-share"))
    manifest["splits"] = {s: _split_summary([r for r in rows if r["split"] == s]) for s in ("train", "calib", "test")}
    train_prompts = [r for r in rows if r["split"] == "train" and r["kind"] == "prompt"]
    share = sum(map(_is_synth, train_prompts)) / max(1, len(train_prompts))
    manifest["generator_share_of_train_prompts"] = round(share, 4)
    return rows, manifest


def training_split(train_cfg: dict, datasets_dir: Path) -> tuple[dict[str, list[dict]], dict]:
    """The data set an artifact was trained on (its seed and scale), by split, and its manifest."""
    seed, scale = int(train_cfg.get("seed", 13)), int(train_cfg.get("scale", 150))
    rows, manifest = build_dataset(datasets_dir if datasets_dir.is_dir() else None, seed=seed, scale=scale)
    return {s: [r for r in rows if r["split"] == s] for s in ("train", "calib", "test")}, manifest


def _label_key(row: dict) -> str:
    if row.get("kind") == "response":
        return "refusal" if row.get("refusal") else "compliance"
    return row["labels"][0] if row["labels"] else "benign"


def _split_summary(rows: list[dict]) -> dict:
    labels = Counter(_label_key(r) for r in rows)
    return {
        "rows": len(rows),
        "labels": dict(sorted(labels.items())),
        "sources": dict(sorted(Counter(r["source"] for r in rows).items())),
    }


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
