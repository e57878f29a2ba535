"""Generator v6: broader slot lists, so held-out entries are less far from the trained ones.

v8 (generator v4) lost most of its held-out recall on shapes its lists had only a handful of entries for:
content-generation requests ("Write a post persuading ...", "List places to buy ... without ..."), chat-style
harmful asks; and it flagged benign security work (40 %), scary-word questions (20 %) and a fifth of WildGuard's
benign prompts (defensive framing, countering prejudice, public facts, harmless fiction set-ups). The lists in
`more_harm`, `more_benign`, `more_attacks` and `wild_benign` are several times longer than v4's; each entry is
its own group, so the split still holds whole entries out.

Generator v5 also added code answers whose label followed the snippet (malicious or not); its candidates then
flagged a fifth of benign code and documents (README). v6's code answers are labelled by whom their lead-in
addresses instead (`addressee_rows`), and documents come with twins whose note speaks to the human reader
(`document_rows`). These rows come from their own random stream: every v4 row, and so the v4
split, stays as it was, and the old artifact can be scored on the new split.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from finetune.triage.data import addressee as ad
from finetune.triage.data import code_docs as cd
from finetune.triage.data import lexicon as lx
from finetune.triage.data import more_attacks as ma
from finetune.triage.data import more_benign as mb
from finetune.triage.data import more_docs as md
from finetune.triage.data import more_harm as mh
from finetune.triage.data import wild_benign as wb
from finetune.triage.data.docs import window

Styler = Callable[[random.Random, str], str]


def _pick(
    rng: random.Random, entries: list[str], n: int, labels: list[str], family: str, styler: Styler, p_style: float = 0.6
) -> list[dict]:
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


def wild_benign_rows(rng: random.Random, n: int, styler: Styler) -> list[dict]:
    rows = []
    for family, entries in (
        ("defensive", wb.DEFENSIVE),
        ("counter_prejudice", wb.COUNTER_PREJUDICE),
        ("public_facts", wb.PUBLIC_FACTS),
        ("definitions", wb.DEFINITIONS),
        ("games_sport", wb.GAMES_SPORT),
        ("coping", wb.COPING),
    ):
        rows += _pick(rng, entries, n, [], family, styler, p_style=0.4)
    rows += _pick(rng, wb.FICTION_SETUPS, n * 2, [], "fiction_setup", styler, p_style=0.2)
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
        rows.append(
            {
                "text": styler(rng, text) if rng.random() < 0.3 else text,
                "labels": labels,
                "group": f"jailbreak_v5:{jb}",
                "source": "synth:jailbreak_v5",
            }
        )
    rows += _pick(rng, ma.EXTRACTION, n // 2, ["prompt_injection"], "extraction_v5", styler, p_style=0.4)
    return rows


def _code_block(lang: str, code: str) -> str:
    return f"```{lang}\n{code}\n```"


def addressee_rows(rng: random.Random, n: int) -> list[dict]:
    """Code documents whose label is who the lead-in addresses: `n` injections and `n` twins, plus own asks.

    v4's requests to put code into the reply always carried attacker code, so the payload could be the signal;
    its held-out documents were caught a quarter of the time. Here the same answer and the same snippet come
    twice: once with a lead-in aimed at whoever writes the response (an injection, whatever the code does), once
    with one a forum answer gives its human reader (benign, even when the code touches the network). A user's
    own request saying what the answer should contain is benign: it is not inside a pasted document.
    """
    snippets = cd.SNIPPETS + ad.NETWORKY_SNIPPETS
    rows = []
    for i in range(n):
        lang, code = rng.choice(snippets)
        _, shown = rng.choice(snippets)
        answer = f"{rng.choice(cd.PROSE_BEFORE)}\n{_code_block(lang, shown)}"
        for lead, labels, family in (
            (rng.choice(ad.TO_THE_ANSWER), ["prompt_injection"], "addr_inj"),
            (rng.choice(ad.TO_THE_READER), [], "addr_reader"),
        ):
            keep = f"{lead}\n{_code_block(lang, code)}"
            doc = f"{answer}\n{keep}" if rng.random() < 0.7 else f"{keep}\n{answer}"
            text = rng.choice(cd.CODE_FRAMES).format(doc=doc)
            rows.append(
                {
                    "text": window(text, rng, size=max(420, len(keep) + 80), keep=keep),
                    "labels": labels,
                    "group": f"{family}:{lead}",
                    "source": f"synth:{family}",
                }
            )
        if i % 2 == 0:
            ask = rng.choice(ad.USER_OWN_ASKS)
            text = ask if rng.random() < 0.5 else f"{ask}\n{_code_block(lang, code)}"
            rows.append({"text": text, "labels": [], "group": f"own_ask:{ask}", "source": "synth:own_ask"})
    return rows


def document_rows(rng: random.Random, n: int) -> list[dict]:
    """`n` documents each with an instruction to the AI hidden in them, the same document with a note to its human
    reader in that place, and a clean one.

    v4 had 26 clean paragraphs, so its held-out clean documents with a "please ignore my earlier message" or an
    "Instructions:" line fired as injections (a fifth of them for v12). A note's form (a P.S., an HTML comment,
    a JSON field) is shared by both sides; whom it addresses is not.
    """
    rows = []
    for _ in range(n):
        body = rng.sample(md.CLEAN_PARAGRAPHS, k=rng.randint(1, 3))
        at = rng.randint(0, len(body))
        frame = rng.choice(lx.DOC_FRAMES)
        for note, labels, family in (
            (rng.choice(ma.DOC_INJECTIONS), ["prompt_injection"], "doc_inj_v6"),
            (rng.choice(md.READER_NOTES), [], "doc_reader"),
        ):
            text = frame.format(doc="\n\n".join([*body[:at], note, *body[at:]]))
            rows.append(
                {
                    "text": window(text, rng, size=max(600, len(note) + 80), keep=note),
                    "labels": labels,
                    "group": f"{family}:{note}",
                    "source": f"synth:{family}",
                }
            )
        text = rng.choice(lx.DOC_FRAMES).format(doc="\n\n".join(body))
        rows.append(
            {
                "text": window(text, rng),
                "labels": [],
                "group": f"doc_clean_v6:{body[0]}",
                "source": "synth:doc_clean_v6",
            }
        )
    return rows


def broad_rows(rng: random.Random, scale: int, styler: Styler) -> list[dict]:
    """About 17*scale prompt rows: harmful requests, benign look-alikes, jailbreaks, extraction, code and documents."""
    rows = harm_rows(rng, scale // 2, styler) + benign_rows(rng, scale * 2 // 5, styler)
    rows += wild_benign_rows(rng, scale // 3, styler) + jailbreak_rows(rng, scale, styler)
    rows += addressee_rows(rng, scale) + document_rows(rng, scale * 2 // 3)
    for r in rows:
        r["kind"] = "prompt"
    return rows
