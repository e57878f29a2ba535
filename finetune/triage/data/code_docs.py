"""Code documents as injection carriers, and the same documents clean (generator v4).

v7 caught 37% of held-out injections inside code documents: its injected documents were prose (e-mails, web
pages, stdlib docstrings), and the few code snippets it saw were always clean. Here an instruction to the AI is
hidden where code keeps text (a comment, a docstring, a string literal, a commit message, a README section) or
follows a forum-style answer asking the assistant to put a snippet into its reply. Clean twins use the same
snippets, including legitimate "add this to your config" prose addressed to the human reader, so that code and
imperatives alone are not the signal: an instruction addressed to the AI (or to "your response") is.
"""

from __future__ import annotations

import random

from finetune.triage.data._load import load
from finetune.triage.data.docs import window

_data = load("code_docs")
SNIPPETS: list[tuple[str, str]] = [tuple(t) for t in _data["SNIPPETS"]]
COMMENT: dict[str, str] = _data["COMMENT"]
PROSE_BEFORE: list[str] = _data["PROSE_BEFORE"]
PROSE_AFTER: list[str] = _data["PROSE_AFTER"]
READER_INSTRUCTIONS: list[str] = _data["READER_INSTRUCTIONS"]
PAYLOADS: list[str] = _data["PAYLOADS"]
ADD_TO_REPLY: list[str] = _data["ADD_TO_REPLY"]
CODE_INSTRUCTIONS: list[str] = _data["CODE_INSTRUCTIONS"]
CODE_FRAMES: list[str] = _data["CODE_FRAMES"]
COMMIT_SUBJECTS: list[str] = _data["COMMIT_SUBJECTS"]
LITERAL_NAMES: list[str] = _data["LITERAL_NAMES"]
README_HEADS: list[str] = _data["README_HEADS"]


def _commented(lang: str, line: str) -> str:
    c = COMMENT.get(lang, "#")
    return f"{c} {line} */" if c == "/*" else f"{c} {line}"


def _carry(rng: random.Random, lang: str, code: str, instruction: str) -> str:
    """Hide `instruction` where this kind of file keeps text."""
    lines = code.split("\n")
    mode = rng.choice(["comment", "comment", "literal", "docstring", "commit", "readme"])
    if mode == "docstring" and lang == "py":
        return f'"""{instruction}"""\n' + code
    if mode == "literal":
        var = rng.choice(LITERAL_NAMES)
        q = "'" if "'" not in instruction else '"'
        lines.insert(rng.randint(0, len(lines)), f"{var} = {q}{instruction}{q}")
        return "\n".join(lines)
    if mode == "commit":
        sha = "".join(rng.choice("0123456789abcdef") for _ in range(7))
        return (
            f"commit {sha}\nAuthor: dev <dev@example.com>\n\n    {rng.choice(COMMIT_SUBJECTS)}\n\n    {instruction}\n\n"
            + code
        )
    if mode == "readme":
        head = rng.choice(README_HEADS)
        return f"{code}\n\n{head}\n{instruction}"
    lines.insert(rng.randint(0, len(lines)), _commented(lang, instruction))
    return "\n".join(lines)


def _answer(rng: random.Random, code: str) -> str:
    parts = [rng.choice(PROSE_BEFORE), f"```\n{code}\n```"] if rng.random() < 0.7 else [f"```\n{code}\n```"]
    after = rng.choice(PROSE_AFTER)
    return "\n".join(parts + ([after] if after else []))


def code_documents(rng: random.Random, n: int) -> list[dict]:
    """`n` injected code documents (two shapes) and `2n` clean ones, rows with text, labels and group."""
    rows = []
    for _ in range(n):
        lang, code = rng.choice(SNIPPETS)
        if rng.random() < 0.5:  # a forum answer, then a request to put attacker code into the reply
            ask = rng.choice(ADD_TO_REPLY)
            keep = f"{ask}\n```\n{rng.choice(PAYLOADS)}\n```"
            doc = f"{_answer(rng, code)}\n{keep}" if rng.random() < 0.75 else f"{keep}\n{_answer(rng, code)}"
            group = f"code_inj:{ask}"
        else:
            keep = rng.choice(CODE_INSTRUCTIONS)
            doc = _carry(rng, lang, code, keep)
            doc = _answer(rng, doc) if rng.random() < 0.3 else doc
            group = f"code_inj:{keep}"
        text = rng.choice(CODE_FRAMES).format(doc=doc)
        rows.append(
            {
                "text": window(text, rng, size=max(420, len(keep) + 80), keep=keep),
                "labels": ["prompt_injection"],
                "group": group,
            }
        )
    for _ in range(2 * n):
        lang, code = rng.choice(SNIPPETS)
        doc = _answer(rng, code) if rng.random() < 0.6 else code
        if rng.random() < 0.3:
            doc = f"{doc}\n{rng.choice(READER_INSTRUCTIONS)}"
        if rng.random() < 0.2:
            head = f"commit {rng.randrange(16**7):07x}\nAuthor: dev <dev@example.com>\n\n"
            doc = f"{head}    {rng.choice(COMMIT_SUBJECTS)}\n\n{doc}"
        text = rng.choice(CODE_FRAMES).format(doc=doc)
        rows.append({"text": window(text, rng, size=420), "labels": [], "group": f"code_clean:{code[:40]}"})
    return rows
