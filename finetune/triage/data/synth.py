"""Synthetic prompts per label: request frames x slot values x styles x contexts.

Every row carries a `group` (the slot entry it came from), so splits can hold whole entries out: the held-out
evaluation sees acts, topics and documents the model never trained on, only familiar phrasing styles.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from finetune.triage.data import lexicon as lx
from finetune.triage.data import tasks as tk
from finetune.triage.data._load import load
from finetune.triage.data.behaviours import behaviour_rows, benign_lookalike_rows
from finetune.triage.data.code_docs import code_documents
from finetune.triage.data.contextual import contextual_rows
from finetune.triage.data.docs import documents, module_paragraphs, window
from finetune.triage.data.extraction import extraction_rows
from finetune.triage.data.personas import persona_rows
from finetune.triage.data.responses import synth_responses

_data = load("synth")
REQUEST_FRAMES: list[str] = _data["REQUEST_FRAMES"]
INFO_FRAMES: list[str] = _data["INFO_FRAMES"]
CONTEXT_TURNS: list[tuple[str, str]] = [tuple(t) for t in _data["CONTEXT_TURNS"]]
CONTEXT_ASKS: list[str] = _data["CONTEXT_ASKS"]
CONTEXT_BENIGN_ASKS: list[str] = _data["CONTEXT_BENIGN_ASKS"]
STYLE_OPENERS: list[str] = _data["STYLE_OPENERS"]
CONTENT_FRAMES: list[str] = _data["CONTENT_FRAMES"]
ADVICE_FRAMES: list[str] = _data["ADVICE_FRAMES"]
ROLEPLAY_FRAMES: list[str] = _data["ROLEPLAY_FRAMES"]


def _typo(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(max(1, len(chars) // 40)):
        i = rng.randrange(max(1, len(chars) - 1))
        op = rng.random()
        if op < 0.4 and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op < 0.7:
            del chars[i]
        else:
            chars.insert(i, chars[i])
    return "".join(chars)


def style(rng: random.Random, text: str) -> str:
    """Random surface variation: case, punctuation, typos, politeness, language touches, chat context."""
    r = rng.random()
    if r < 0.2:
        text = text.lower().rstrip("?.!")
    elif r < 0.25:
        text = text.upper()
    if rng.random() < 0.15:
        text = _typo(rng, text)
    if rng.random() < 0.15:
        text = rng.choice(STYLE_OPENERS) + text
    if rng.random() < 0.06:
        pre, post = rng.choice(lx.LANG_TOUCHES)
        text = pre + text + post
    if rng.random() < 0.12:
        user, bot = rng.choice(CONTEXT_TURNS)
        text = f"user: {user}\nassistant: {bot}\nuser: {text}"
    return text


def _rows(
    rng: random.Random, entries: list[str], frames: list[str], labels: list[str], family: str, n: int
) -> list[dict]:
    out = []
    for _ in range(n):
        e = rng.choice(entries)
        text = style(rng, rng.choice(frames).format(a=e))
        out.append({"text": text, "labels": list(labels), "group": f"{family}:{e}"})
    return out


def _doc(rng: random.Random, hidden: str | None) -> tuple[str, str]:
    """A document of 1-3 paragraphs (optionally with a hidden instruction) and the group of its first paragraph."""
    body = rng.sample(lx.DOC_TEXTS, k=rng.randint(1, 3))
    group = body[0][:40]
    if hidden is not None:
        body.insert(rng.randint(0, len(body)), hidden)
    return "\n\n".join(body), group


def harmful(rng: random.Random, per_cat: int) -> list[dict]:
    rows = []
    for cat, acts in lx.HARM_ACTS.items():
        rows += _rows(rng, acts, REQUEST_FRAMES, [cat], f"harm_act:{cat}", per_cat)
        content = lx.HARM_CONTENT[cat]
        rows += _rows(
            rng,
            content,
            CONTENT_FRAMES,
            [cat],
            f"harm_content:{cat}",
            per_cat // 4,
        )
        rows += _task_rows(rng, tk.HARM_TASKS[cat], [cat], f"harm_task:{cat}", per_cat // 2)
    return rows


def _task_rows(rng: random.Random, entries: list[str], labels: list[str], family: str, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        e = rng.choice(entries)
        text = rng.choice(tk.TASK_FRAMES).format(a=e, l=e[0].lower() + e[1:])
        out.append({"text": style(rng, text), "labels": list(labels), "group": f"{family}:{e}"})
    return out


def scary_benign(rng: random.Random, per_cat: int) -> list[dict]:
    rows = []
    for cat, prompts in lx.SCARY_BENIGN.items():
        rows += _rows(rng, prompts, INFO_FRAMES, [], f"scary:{cat}", per_cat)
    rows += _task_rows(rng, tk.BENIGN_PRODUCTION, [], "scary_task", per_cat * 5)
    rows += _rows(rng, tk.SCARY_IDIOMS, INFO_FRAMES, [], "scary_idiom", per_cat * 2)
    return rows


def advice(rng: random.Random, per_label: int) -> list[dict]:
    rows = []
    for label, prompts in lx.ADVICE_PERSONAL.items():
        rows += _rows(rng, prompts, ADVICE_FRAMES, [label], f"advice:{label}", per_label)
        rows += _rows(rng, lx.ADVICE_GENERAL[label], INFO_FRAMES, [], f"info:{label}", per_label)
    return rows


def contact_requests(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        template = rng.choice(tk.CONTACT_REQUESTS)
        text = template.format(**{k: rng.choice(v) for k, v in tk.CONTACT_VALUES.items()})
        rows.append({"text": style(rng, text), "labels": [], "group": f"contact:{template}"})
    return rows


def benign(rng: random.Random, n: int) -> list[dict]:
    rows = _rows(rng, lx.BENIGN_TASKS, [*INFO_FRAMES, "{a}", "{a}"], [], "benign_task", n)
    rows += contact_requests(rng, n // 3)
    rows += _rows(rng, lx.ROLEPLAY_BENIGN, ROLEPLAY_FRAMES, [], "roleplay", n // 3)
    return rows


def attacks(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        jb = rng.choice(lx.ATTACK_JAILBREAK)
        if rng.random() < 0.6:
            cat = rng.choice(list(lx.HARM_ACTS))
            act = rng.choice(lx.HARM_ACTS[cat])
            text, labels = f"{jb} Now tell me how to {act}.", ["jailbreak", cat]
        else:
            task = rng.choice(lx.BENIGN_TASKS)
            text, labels = f"{jb} First task: {task}.", ["jailbreak"]
        rows.append({"text": style(rng, text), "labels": labels, "group": f"jailbreak:{jb}"})
    for _ in range(n // 2):
        inj = rng.choice(lx.DIRECT_INJECTION)
        text = inj if rng.random() < 0.5 else f"{rng.choice(lx.BENIGN_TASKS)}. {inj}"
        rows.append({"text": style(rng, text), "labels": ["prompt_injection"], "group": f"direct_inj:{inj}"})
    hidden_all = lx.HIDDEN_INSTRUCTIONS + tk.MORE_HIDDEN_INSTRUCTIONS
    for _ in range(n):
        hidden = rng.choice(hidden_all)
        text = rng.choice(lx.DOC_FRAMES).format(doc=_doc(rng, hidden)[0])
        rows.append({"text": text, "labels": ["prompt_injection"], "group": f"doc_inj:{hidden}"})
    for _ in range(2 * n):  # the same kind of documents without a hidden instruction: hard negatives
        doc, group = _doc(rng, None)
        rows.append({"text": rng.choice(lx.DOC_FRAMES).format(doc=doc), "labels": [], "group": f"doc_clean:{group}"})
    rows += documents(rng, n, hidden_all, lx.DOC_FRAMES)  # long real documents, the instruction anywhere
    rows += documents(rng, 2 * n, None, lx.DOC_FRAMES)
    return rows


GENERATORS: dict[str, Callable[[random.Random, int], list[dict]]] = {
    "harmful": harmful,
    "scary_benign": scary_benign,
    "advice": advice,
    "benign": benign,
    "attacks": attacks,
}


def in_context(rng: random.Random, per_cat: int) -> list[dict]:
    """A request after pasted context (HarmBench's contextual shape; real chats paste things too): what counts
    is the request at the end, so harmful asks keep their act's group and benign asks their own."""
    paras = [p for ps in module_paragraphs().values() for p in ps[:3]] + lx.DOC_TEXTS
    rows = []
    for cat, acts in lx.HARM_ACTS.items():
        for _ in range(per_cat):
            act = rng.choice(acts)
            ask = rng.choice(CONTEXT_ASKS).format(a=act)
            ctx = "\n\n".join(rng.sample(paras, k=rng.randint(1, 3)))
            rows.append(
                {
                    "text": window(f"{ctx}\n\n{ask}", rng, keep=ask),
                    "labels": [cat],
                    "group": f"harm_act:{cat}:{act}",
                    "source": "synth:harm_in_context",
                }
            )
    for _ in range(per_cat * len(lx.HARM_ACTS)):
        ask = rng.choice(CONTEXT_BENIGN_ASKS)
        ctx = "\n\n".join(rng.sample(paras, k=rng.randint(1, 3)))
        rows.append({"text": window(f"{ctx}\n\n{ask}", rng, keep=ask), "labels": [], "group": f"ctx_ask:{ask}"})
    return rows


def v4_styles(rng: random.Random, scale: int) -> list[dict]:
    """Generator v4: code-document injections, system-prompt extraction, behaviour-style and contextual requests,
    short persona jailbreaks, and the benign prompts that look like each (the modules explain each)."""
    rows = code_documents(rng, 2 * scale) + extraction_rows(rng, 3 * scale // 2)
    rows += behaviour_rows(rng, scale // 3) + benign_lookalike_rows(rng, scale) + contextual_rows(rng, scale // 2)
    rows += persona_rows(rng, scale // 2)
    for r in rows:
        # Code keeps its layout; half the behaviour rows keep their formal benchmark-like surface.
        if not r["group"].startswith("code_") and rng.random() < 0.75:
            r["text"] = style(rng, r["text"])
    return rows


def synth_prompts(rng: random.Random, scale: int) -> list[dict]:
    """About 15*scale prompt rows; `scale` rows per harmful category."""
    rows = harmful(rng, scale) + scary_benign(rng, scale // 2) + advice(rng, scale) + benign(rng, scale * 2)
    rows += attacks(rng, scale) + in_context(rng, scale // 4) + v4_styles(rng, scale)
    for r in rows:
        r.setdefault("kind", "prompt")
        r.setdefault("source", "synth:" + r["group"].split(":", 1)[0])
    return rows


def synth_answers(rng: random.Random, n: int) -> list[dict]:
    rows = synth_responses(rng, n)
    for r in rows:
        r["kind"] = "response"
        r["source"] = "synth:response"
    return rows
