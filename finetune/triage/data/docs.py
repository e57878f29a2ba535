"""Real, varied clean documents for injection training: the Python standard library's own docstrings.

Generator v2 had 26 short hand-written documents; held out, the model flagged 59% of clean documents and a
third of BIPIA's clean e-mails as injections, because to it any document looked like an attack carrier. The
stdlib docstrings are thousands of paragraphs of real prose full of imperatives ("Return...", "Use...",
"Do not call..."), shipped with every Python (deterministic for a Python version, no download). Each module
is one group, so held-out documents come from modules never seen in training.

Known wart: members are read at run time, and importing torch replaces `inspect.getfile` (one paragraph fewer);
`train` and `calibrate` both build the data after torch is loaded, so they agree. The next generator version
should read docstrings from the stdlib sources (`ast`) instead.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re

from finetune.triage.data._load import load

_data = load("docs")
MODULES: list[str] = _data["MODULES"]
_WS = re.compile(r"[ \t]+")


def _paragraphs(doc: str | None) -> list[str]:
    if not doc:
        return []
    out = []
    for para in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        para = _WS.sub(" ", para.strip())
        if 60 <= len(para) <= 700 and not para.startswith(">>>"):
            out.append(para)
    return out


def module_paragraphs() -> dict[str, list[str]]:
    """Paragraphs per module (module, class and function docstrings), in a stable order."""
    found: dict[str, list[str]] = {}
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # a stripped-down Python: fewer documents, not an error
            continue
        paras = _paragraphs(mod.__doc__)
        for attr in sorted(getattr(mod, "__all__", None) or dir(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr, None)
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
                paras += _paragraphs(getattr(obj, "__doc__", None))
        if len(paras) >= 3:
            found[name] = list(dict.fromkeys(paras))
    return found


def window(text: str, rng: random.Random, size: int = 600, keep: str | None = None) -> str:
    """A piece of `text` of about `size` characters, containing `keep` when given (what one model window sees)."""
    if len(text) <= size:
        return text
    if keep is None:
        start = rng.randint(0, len(text) - size)
        return text[start : start + size]
    i = text.index(keep)
    lo = max(0, i - rng.randint(0, max(0, size - len(keep))))
    return text[lo : max(i + len(keep), lo + size)]


def documents(rng: random.Random, n: int, hidden: list[str] | None, frames: list[str]) -> list[dict]:
    """`n` rows of stdlib documents; with `hidden`, one instruction is inserted at a random paragraph."""
    by_module = module_paragraphs()
    names = sorted(by_module)
    rows = []
    for _ in range(n if names else 0):
        name = rng.choice(names)
        paras = by_module[name]
        start = rng.randrange(len(paras))
        body = paras[start : start + rng.randint(1, 5)]
        inj = rng.choice(hidden) if hidden else None
        if inj is not None:
            body.insert(rng.randint(0, len(body)), inj)
        text = window(rng.choice(frames).format(doc="\n\n".join(body)), rng, keep=inj)
        # Injected rows are grouped by their instruction, like the hand-written documents, so a held-out
        # instruction is never seen in training in any carrier.
        group = f"doc_inj:{inj}" if inj else f"stdlib_doc:{name}"
        rows.append({"text": text, "labels": ["prompt_injection"] if inj else [], "group": group})
    return rows
