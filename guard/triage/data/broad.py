"""Generator v5: broader slot lists, so held-out entries are less far from the trained ones.

v8 (generator v4) lost most of its held-out recall on shapes its lists had only a handful of entries for:
content-generation requests ("Write a post persuading ...", "List places to buy ... without ..."), chat-style
harmful asks, polite code-answer suggestions whose snippet is malicious (BIPIA's code documents: 25 % caught),
and it flagged benign security work (44 %) and scary-word questions (20 %). The lists in `more_harm`,
`more_benign` and `more_attacks` are several times longer than v4's; each entry is its own group, so the split
still holds whole entries out.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from guard.triage.data import lexicon as lx
from guard.triage.data import more_attacks as ma
from guard.triage.data import more_benign as mb
from guard.triage.data import more_harm as mh
from guard.triage.data.code_docs import CODE_FRAMES, PROSE_AFTER, PROSE_BEFORE
from guard.triage.data.docs import window

Styler = Callable[[random.Random, str], str]


def _pick(rng: random.Random, entries: list[str], n: int, labels: list[str], family: str,
          styler: Styler, p_style: float = 0.6) -> list[dict]:
    out = []
    for _ in range(n):
        e = rng.choice(entries)
        text = styler(rng, e) if rng.random() < p_style else e
        out.append({"text": text, "labels": list(labels), "group": f"{family}:{e}", "source": f"synth:{family}"})
    return out


def harm_rows(rng: random.Random, per_cat: int, styler: Styler) -> list[dict]:
    rows = []
    for cat in lx.HARM_ACTS:
        rows += _pick(rng, mh.HARM_REQUESTS[cat], per_cat, [cat], "harm_request", styler, p_style=0.5)
        rows += _pick(rng, mh.HARM_CHAT[cat], per_cat * 4 // 5, [cat], "harm_chat", styler, p_style=0.3)
    return rows


def benign_rows(rng: random.Random, per_cat: int, styler: Styler) -> list[dict]:
    rows = []
    for entries in mb.SCARY_WORDS_BENIGN.values():
        rows += _pick(rng, entries, per_cat, [], "scary_word", styler)
    n = per_cat * len(mb.SCARY_WORDS_BENIGN)
    rows += _pick(rng, mb.SECURITY_WORK, n // 3, [], "sec_work", styler)
    rows += _pick(rng, mb.SENSITIVE_BUT_SAFE, n // 3, [], "adv_safe", styler)
    rows += _pick(rng, mb.EVERYDAY_CHAT, n // 2, [], "chat", styler, p_style=0.3)
    rows += _pick(rng, ma.BENIGN_META, n // 3, [], "meta", styler)
    return rows


def _suggestion_doc(rng: random.Random, lead: str, lang: str, code: str) -> str:
    """A forum-style answer with the suggestion in it, cut to about one model window around the suggestion."""
    answer = [rng.choice(PROSE_BEFORE)] if rng.random() < 0.7 else []
    block = f"{lead}\n```{lang}\n{code}\n```"
    after = rng.choice(PROSE_AFTER)
    text = rng.choice(CODE_FRAMES).format(doc="\n".join([*answer, block] + ([after] if after else [])))
    return window(text, rng, size=max(480, len(block) + 60), keep=block)


# A lead-in that speaks to whoever writes the answer is an instruction to the assistant whatever the code.
_TO_THE_ANSWER = re.compile(r"\b(assistant|ai|model|bot|chatbot|llm|copilot|reply|response|answer)\b", re.I)


def code_suggestion_rows(rng: random.Random, n: int) -> list[dict]:
    """A code answer suggesting a snippet: an injection when the snippet is malicious, benign when it is not.

    Groups are payloads, so held-out rows carry code the model never saw. v9 gave the benign twins every lead-in,
    as many as the injections: it then flagged half its held-out twins and 42 % of BIPIA's clean code answers.
    The twins are now a third as many, and only with lead-ins a forum answer could carry for its human reader."""
    rows = []
    human_leads = [lead for lead in ma.SUGGEST_SNIPPET if not _TO_THE_ANSWER.search(lead)]
    for i in range(n):
        lang, code = rng.choice(ma.MALICIOUS_SNIPPETS)
        lead = rng.choice(ma.SUGGEST_SNIPPET)
        rows.append({"text": _suggestion_doc(rng, lead, lang, code), "labels": ["prompt_injection"],
                     "group": f"code_suggest:{code}", "source": "synth:code_suggest"})
        if i % 3:
            continue
        lang, code = rng.choice(ma.HARMLESS_SNIPPETS)
        lead = rng.choice(human_leads)
        rows.append({"text": _suggestion_doc(rng, lead, lang, code), "labels": [],
                     "group": f"code_suggest_clean:{code}", "source": "synth:code_suggest_clean"})
    return rows


def jailbreak_rows(rng: random.Random, n: int, styler: Styler) -> list[dict]:
    rows = []
    for _ in range(n):
        jb = rng.choice(ma.JAILBREAK_TEMPLATES)
        r = rng.random()
        if r < 0.5:
            cat = rng.choice(list(mh.HARM_REQUESTS))
            ask = rng.choice(mh.HARM_REQUESTS[cat])
            text, labels = f"{jb}\n\n{ask}", ["jailbreak", cat]
        elif r < 0.75:
            text, labels = f"{jb} {rng.choice(lx.BENIGN_TASKS)}", ["jailbreak"]
        else:
            text, labels = jb, ["jailbreak"]
        rows.append({"text": styler(rng, text) if rng.random() < 0.3 else text, "labels": labels,
                     "group": f"jailbreak_v5:{jb}", "source": "synth:jailbreak_v5"})
    rows += _pick(rng, ma.EXTRACTION, n // 2, ["prompt_injection"], "extraction_v5", styler, p_style=0.4)
    return rows


def broad_rows(rng: random.Random, scale: int, styler: Styler) -> list[dict]:
    """About 16*scale rows, a third harmful, a third benign, a third attacks and their twins."""
    rows = harm_rows(rng, scale // 2, styler) + benign_rows(rng, scale * 2 // 5, styler)
    rows += code_suggestion_rows(rng, scale) + jailbreak_rows(rng, scale, styler)
    return rows
