"""The source table (`sources.yml`), the exclusion list (`exclusions.yml`) and the reviewed answer labels
(`answer_review.yml`), parsed and applied.

Each public file's rows are mapped onto the taxonomy by its entry: benign rows stay benign, attack rows get their
attack label, harmful rows get the label their source category maps to (or, for "?", the first keyword family
their text matches, else the source's default). A file missing from the table is an error: a new file must be
reviewed before it is trained on.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from guard.taxonomy import INPUT_LABELS

HERE = Path(__file__).resolve().parent
SOURCES_FILE = HERE / "sources.yml"
EXCLUSIONS_FILE = HERE / "exclusions.yml"
REVIEW_FILE = HERE / "answer_review.yml"
Role = Literal["train", "calib", "test", "skip"]
RESTRICTED = ("NC", "GPL", "SA")  # licence markers that keep a source out of training
ATTACK_LABEL = {"jailbreak": "jailbreak", "injection": "prompt_injection"}


class SourceTableError(ValueError):
    """sources.yml / exclusions.yml is malformed or inconsistent; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HarmfulMap(_Strict):
    default: str = "?"
    categories: dict[str, str | None] = {}
    by_intent: bool = False  # Do-Not-Answer's fine intent codes decide first
    # A source whose rows carry no category but an index into its ordered category list (SORRY-Bench: ten
    # questions per category, in the paper's order): category = index // bucket + 1, as a string.
    category_index: str | None = None
    category_bucket: int = 10
    # A source whose annotators rated severity: a harmful row counts only when the mean of its ratings is at
    # most this; milder rows are dropped (neither benign nor harmful). None = every harmful row counts.
    max_mean_rating: float | None = None
    rating_field: str = "votes"


def source_category(src: Source, raw: dict) -> str | None:
    if src.harmful.category_index is not None:
        index = raw.get(src.harmful.category_index)
        return None if index is None else str(int(index) // src.harmful.category_bucket + 1)
    cat = raw.get("category")
    return None if cat is None else str(cat)


class RolesBy(_Strict):
    field: str
    values: dict[str, Role]


class Source(_Strict):
    licence: str
    role: Role
    kind: Literal["prompt", "content", "response"]
    cap: int | None = None
    real_user: bool = False
    look_alike: bool = False
    roleplay_doc: bool = False
    roles_by: RolesBy | None = None
    drop_where: dict[str, list[str]] = {}
    harmful: HarmfulMap = HarmfulMap()

    @property
    def restricted(self) -> bool:
        return any(m in self.licence.split("(")[0] for m in RESTRICTED)

    def role_of(self, raw: dict) -> Role:
        if self.roles_by is not None:
            return self.roles_by.values.get(str(raw.get(self.roles_by.field)), self.role)
        return self.role


class Exclusion(_Strict):
    source: str
    text: str  # the row's text starts with this
    reason: str


class ReviewedRow(_Strict):
    line: int
    label: Literal["refusal", "compliance", "unclear"]
    text: str  # the row's text starts with this


class AnswerReview(_Strict):
    replaces: Literal["refusal", "compliance"]  # the file's label whose rows count only as reviewed
    rows: list[ReviewedRow]


class _Reviews(_Strict):
    reviews: dict[str, AnswerReview] = {}


class _Table(_Strict):
    sources: dict[str, Source]


class _Exclusions(_Strict):
    exclusions: list[Exclusion] = []


def _parse(path: Path, model: type[BaseModel]) -> BaseModel:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return model.model_validate(data)
    except yaml.YAMLError as exc:
        raise SourceTableError(f"{path}: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SourceTableError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


@cache
def source_table(path: Path = SOURCES_FILE) -> dict[str, Source]:
    table = _parse(path, _Table)
    assert isinstance(table, _Table)
    for name, src in table.sources.items():
        labels = {lab for lab in (src.harmful.default, *src.harmful.categories.values()) if lab not in (None, "?")}
        if unknown := labels - set(INPUT_LABELS):
            names = sorted(map(str, unknown))
            raise SourceTableError(f"{path}: sources.{name}.harmful: labels not in the taxonomy: {names}")
        roles = {src.role, *(src.roles_by.values.values() if src.roles_by else ())}
        if src.restricted and "train" in roles:
            raise SourceTableError(f"{path}: sources.{name}: a {src.licence} source may not be trained on")
    return table.sources


@cache
def exclusions(path: Path = EXCLUSIONS_FILE) -> tuple[Exclusion, ...]:
    parsed = _parse(path, _Exclusions)
    assert isinstance(parsed, _Exclusions)
    return tuple(parsed.exclusions)


@cache
def answer_reviews(path: Path = REVIEW_FILE) -> dict[str, AnswerReview]:
    parsed = _parse(path, _Reviews)
    assert isinstance(parsed, _Reviews)
    return parsed.reviews


def answer_label(name: str, line: int, raw: dict) -> str | None:
    """An answer row's label (refusal | compliance), the reviewed one where the source's own is replaced; None
    drops the row (not reviewed, or reviewed as unclear)."""
    label = raw["label"]
    review = answer_reviews().get(name)
    if label not in ("refusal", "compliance") or review is None or label != review.replaces:
        return label if label in ("refusal", "compliance") else None
    row = next((r for r in review.rows if r.line == line), None)
    if row is None:
        return None
    if not raw["text"].startswith(row.text):
        raise SourceTableError(f"{REVIEW_FILE}: reviews.{name}: line {line} no longer starts with {row.text!r}")
    return None if row.label == "unclear" else row.label


KEYWORDS: list[tuple[str, str]] = [
    (
        "cbrn",
        r"nerve agent|sarin|anthrax|ricin|toxin|pathogen|bioweapon|biological weapon|chemical weapon|uranium|"
        r"nuclear|radiolog|dirty bomb|mustard gas|vx\b|botulin|virus.*(spread|transmiss)|poison gas",
    ),
    (
        "cyber",
        r"hack|malware|ransomware|virus|keylog|exploit|ddos|phish|botnet|password|sql|crack|spyware|trojan|"
        r"backdoor|vulnerab|cyber",
    ),
    ("self_harm", r"suicid|kill myself|self-harm|self harm|cut myself|overdose|end my life|anorex|bulimi|starv"),
    ("sexual", r"\bsex|porn|nude|naked|erotic|explicit|lewd|fetish|orgasm|genital|dirty joke|child.*abuse"),
    (
        "privacy",
        r"address|phone number|social security|location of|track|spy on|personal information|private|"
        r"where does .* live|email of|ssn|dox|stalk|surveil",
    ),
    (
        "violence_weapons",
        r"bomb|weapon|gun|firearm|explosive|kill|murder|shoot|stab|assault|attack|hurt|injur|"
        r"violen|torture|knife|rifle|ammunition|arson|kidnap|fight|terror",
    ),
    (
        "hate_harassment",
        r"racis|sexis|hate|slur|inferior|insult|bully|harass|humiliat|stereotyp|discriminat|"
        r"offensive|derogator|mock|ugly|stupid|idiot|gay|jew|muslim|black people|immigrant",
    ),
    (
        "crime",
        r"drug|meth|cocaine|heroin|launder|fraud|scam|steal|theft|shoplift|counterfeit|forge|smuggl|brib|"
        r"illegal|evade|tax|gambl|cheat|fake|dark web|traffick|break into|rob",
    ),
]
_COMPILED = [(label, re.compile(pat, re.I)) for label, pat in KEYWORDS]
INTENT_MAP = [
    ("S004", "sexual"),
    ("S006sh", "self_harm"),
    ("S009", "privacy"),
    ("S008", "cyber"),
    ("S005", "hate_harassment"),
    ("S007", "hate_harassment"),
    ("S002med", "medical_advice"),
    ("S002fin", "financial_advice"),
    ("S002legal", "legal_advice"),
    ("S006", "?"),
    ("S003", "?"),
]


def keyword_label(text: str) -> str | None:
    return next((label for label, pat in _COMPILED if pat.search(text)), None)


def _intent_label(intents: list[str]) -> str | None:
    joined = " ".join(intents)
    # No code matched: C006 (questions about the assistant) or S001 (misinformation), outside the taxonomy.
    return next((label for code, label in INTENT_MAP if code in joined), None)


def map_harmful(src: Source, raw: dict) -> str | None:
    """Our label for a source row labelled harmful, or None to drop it."""
    if src.harmful.max_mean_rating is not None:
        ratings = raw.get(src.harmful.rating_field) or []
        if not ratings or sum(ratings) / len(ratings) > src.harmful.max_mean_rating:
            return None
    cat = source_category(src, raw)
    mapped = src.harmful.categories.get(cat, "?") if cat is not None else "?"
    if mapped is None or mapped != "?":
        return mapped
    if src.harmful.by_intent:
        by_intent = _intent_label(raw.get("intents") or [])
        if by_intent != "?":
            return by_intent
    if src.harmful.default != "?":
        return src.harmful.default
    return keyword_label(raw["text"]) or "crime"


def map_row(src: Source, raw: dict) -> list[str] | None:
    """Label list for one classification row (empty = benign), or None to drop it."""
    label = raw.get("label")
    if label == "benign":
        return []
    if label in ATTACK_LABEL:
        return [ATTACK_LABEL[label]]
    if label == "harmful":
        mapped = map_harmful(src, raw)
        return [mapped] if mapped else None
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _excluded(name: str, text: str) -> bool:
    return any(e.source == name and text.startswith(e.text) for e in exclusions())


def _dropped(src: Source, raw: dict) -> bool:
    return any(str(raw.get(k)) in vals for k, vals in src.drop_where.items())


def load_file(path: Path) -> list[dict]:
    """Mapped rows of one data set file: text, labels, kind, source, role, group, raw (the row minus its text)."""
    name = path.stem
    table = source_table()
    if name not in table:
        raise SourceTableError(f"{SOURCES_FILE}: no entry for {path.name}: review the file and add it")
    src = table[name]
    if src.role == "skip" and src.roles_by is None:
        return []
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            raw = json.loads(line)
            if "text" not in raw or "label" not in raw or _dropped(src, raw) or _excluded(name, raw["text"]):
                continue
            answer = None
            if src.kind == "response":
                answer = answer_label(name, n, raw)
                labels: list[str] | None = [] if answer is not None else None
            else:
                labels = map_row(src, raw)
            if labels is None:
                continue
            rows.append(
                {
                    "text": raw["text"],
                    "labels": labels,
                    "kind": "response" if src.kind == "response" else "prompt",
                    "refusal": int(answer == "refusal") if src.kind == "response" else None,
                    "source": name,
                    "role": src.role_of(raw),
                    "group": f"{name}:{_group_key(raw, n)}",
                    "raw": _raw_meta(raw),
                }
            )
    return rows


def _raw_meta(raw: dict) -> dict:
    """The source row minus its text; a contextual request (context, `---`, request) notes its request, so that
    cropping a long row keeps it: the context alone is not harmful."""
    meta = {k: v for k, v in raw.items() if k != "text"}
    if raw.get("functional_category") == "contextual" and "\n---\n" in raw["text"]:
        meta["request_text"] = raw["text"].rsplit("\n---\n", 1)[1]
    return meta


def _group_key(raw: dict, n: int) -> str:
    # Keep near-duplicates together so a split cannot put one copy in train and its twin in evaluation.
    for key in ("act", "behavior_id", "behavior", "task", "case_id", "qid", "uid"):
        if raw.get(key):
            return str(raw[key])
    return str(n)
