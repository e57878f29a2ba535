"""Public data sets from `settings.datasets_dir`, mapped onto the triage taxonomy.

Source categories do not line up with ours, so each harmful row gets a category from its source category when
that is specific, else from keywords in its text, else a per-source default. Categories outside the taxonomy
(misinformation, copyright, political lobbying, government decisions) are dropped rather than guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

# Source category -> our label (None = drop the row; "?" = decide from the text).
CATEGORY_MAP: dict[str, str | None] = {
    # HarmBench
    "chemical_biological": "cbrn",
    "cybercrime_intrusion": "cyber",
    "illegal": "?",
    "harassment_bullying": "hate_harassment",
    "harmful": "?",
    "misinformation_disinformation": None,
    "copyright": None,
    # Do-Not-Answer
    "information_hazard": "?",
    "malicious_uses": "?",
    "discrimination_exclusion_toxicity_hateful_offensive": "?",
    "misinformation_harms": "?",
    "human_chatbox": "?",
    # Forbidden questions
    "Illegal Activity": "?",
    "Hate Speech": "hate_harassment",
    "Malware": "cyber",
    "Physical Harm": "?",
    "Economic Harm": "?",
    "Fraud": "crime",
    "Pornography": "sexual",
    "Political Lobbying": None,
    "Privacy Violence": "privacy",
    "Legal Opinion": "legal_advice",
    "Financial Advice": "financial_advice",
    "Health Consultation": "medical_advice",
    "Gov Decision": None,
    # JailbreakBench
    "Harassment/Discrimination": "hate_harassment",
    "Malware/Hacking": "cyber",
    "Physical harm": "?",
    "Economic harm": "?",
    "Fraud/Deception": "crime",
    "Disinformation": None,
    "Sexual/Adult content": "sexual",
    "Privacy": "privacy",
    "Expert advice": "?",
    "Government decision-making": None,
}

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
    ("sexual", r"\bsex|porn|nude|naked|erotic|explicit|lewd|fetish|orgasm|genital|dirty joke"),
    (
        "privacy",
        r"address|phone number|social security|location of|track|spy on|personal information|private|"
        r"where does .* live|email of|ssn|dox|stalk|surveil",
    ),
    (
        "violence_weapons",
        r"bomb|weapon|gun|firearm|explosive|kill|murder|shoot|stab|assault|attack|hurt|injur|"
        r"violen|torture|knife|rifle|ammunition|arson|kidnap|fight",
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
    ("medical_advice", r"medic|doctor|symptom|diagnos|treat|dose|dosage|pill|prescription|disease|cancer|pregnan"),
    ("financial_advice", r"invest|stock|crypto|bitcoin|portfolio|loan|mortgage|retire|savings|financ"),
    ("legal_advice", r"lawyer|legal|lawsuit|sue\b|court|contract|custody|attorney"),
]
_COMPILED = [(label, re.compile(pat, re.I)) for label, pat in KEYWORDS]
DEFAULT_BY_SOURCE = {
    "do_not_answer": "crime",
    "harmbench": "crime",
    "jbb_behaviors": "crime",
    "jailbreak_llms_forbidden_questions": "crime",
}
ATTACK_LABEL = {"jailbreak": "jailbreak", "injection": "prompt_injection"}


def keyword_label(text: str) -> str | None:
    for label, pat in _COMPILED:
        if pat.search(text):
            return label
    return None


def map_harmful(row: dict) -> str | None:
    """Our label for a source row labelled harmful, or None to drop it."""
    cat = row.get("category")
    mapped = CATEGORY_MAP.get(cat, "?") if cat else "?"
    if mapped != "?":
        return mapped
    if row.get("source") == "do_not_answer":
        by_intent = _donotanswer_intent(row.get("intents") or [])
        if by_intent != "?":
            return by_intent
    found = keyword_label(row["text"])
    if found in ("medical_advice", "financial_advice", "legal_advice") and cat not in (
        "Expert advice",
        "human_chatbox",
        "misinformation_harms",
    ):
        found = None
    return found or DEFAULT_BY_SOURCE.get(str(row.get("source")), "crime")


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


def _donotanswer_intent(intents: list[str]) -> str | None:
    """Do-Not-Answer's fine intent codes; '?' = decide from the text; None = outside the taxonomy."""
    joined = " ".join(intents)
    for code, label in INTENT_MAP:
        if code in joined:
            return label
    return None  # C006 (questions about the assistant itself) and S001 (misinformation) only


def map_row(row: dict) -> list[str] | None:
    """Label list for one classification row (empty = benign), or None to drop it."""
    label = row.get("label")
    if label == "benign":
        return []
    if label in ATTACK_LABEL:
        return [ATTACK_LABEL[label]]
    if label == "harmful":
        mapped = map_harmful(row)
        return [mapped] if mapped else None
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_file(path: Path) -> list[dict]:
    """Mapped rows of one data set file: text, labels, source, group, raw (the source row minus its text)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            raw = json.loads(line)
            if "text" not in raw or "label" not in raw:
                continue  # preference files (hh_rlhf) are not classification data
            labels = map_row(raw)
            if labels is None:
                continue
            rows.append(
                {
                    "text": raw["text"],
                    "labels": labels,
                    "kind": "prompt",
                    "source": path.stem,
                    "group": f"{path.stem}:{_group_key(raw, n)}",
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
    for key in ("act", "behavior_id", "behavior", "task"):
        if raw.get(key):
            return str(raw[key])
    return str(n)
