"""PII detection and masking: emails, phone numbers, payment cards (Luhn), IBANs (mod 97), national IDs.

Regexes find candidates; checksums reject look-alikes (order numbers, timestamps) so masking stays precise.
`mask(text)` is on the request path and in the records writer, so it is one combined pre-compiled scan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

KINDS = ("email", "card", "iban", "us_ssn", "uk_nino", "phone")


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    kind: str


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(raw: str) -> bool:
    s = raw.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _card_ok(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ssn_ok(raw: str) -> bool:
    area, group, serial = raw[0:3], raw[4:6], raw[7:11]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def _phone_ok(raw: str) -> bool:
    # Nine digits or more keeps dates, times and short order numbers out.
    return 9 <= sum(ch.isdigit() for ch in raw) <= 15 and _DATE.fullmatch(raw) is None


# Order matters: earlier kinds win where candidates overlap (a card number is not also a phone number).
_PATTERNS: list[tuple[str, str, Callable[[str], bool] | None]] = [
    # The lookbehind anchors a match at the start of a run: long tokens stay linear, not quadratic.
    ("email", r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)*\.[A-Za-z]{2,}\b", None),
    ("iban", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", iban_ok),
    ("card", r"\b\d(?:[ -]?\d){12,18}\b", _card_ok),
    ("us_ssn", r"\b\d{3}-\d{2}-\d{4}\b", _ssn_ok),
    ("uk_nino", r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", None),
    ("phone", r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?!\w)", _phone_ok),
]
_COMBINED = re.compile("|".join(f"(?P<{kind}>{rx})" for kind, rx, _ in _PATTERNS))
_CHECKS = {kind: check for kind, _, check in _PATTERNS}
_HINT = re.compile(r"[\d@]")
_SINGLE = [(kind, re.compile(rx), check) for kind, rx, check in _PATTERNS]
_ORDER = [kind for kind, _, _ in _PATTERNS]
# Longest text one match can cover; streaming holds back at least this much before releasing text.
MAX_MATCH_CHARS = 64


def find(text: str, kinds: Iterable[str] | None = None) -> list[Span]:
    """Non-overlapping PII spans, left to right."""
    if _HINT.search(text) is None:
        return []  # every kind needs a digit or an '@': most chat text is ruled out by one fast scan
    wanted = None if kinds is None else frozenset(kinds)
    spans: list[Span] = []
    pos = 0
    while (m := _COMBINED.search(text, pos)) is not None:
        span = _accept(text, m.start(), m.lastgroup or "", m.group())
        if span is not None and (wanted is None or span.kind in wanted):
            spans.append(span)
        pos = span.end if span is not None else m.end()  # a rejected number is not re-read in parts
    return spans


def _accept(text: str, start: int, kind: str, raw: str) -> Span | None:
    """The first kind, from the one that matched on, whose pattern and checksum hold at `start`: a 13-digit
    number that fails Luhn is not a card, but may still be a phone number."""
    check = _CHECKS[kind]
    if check is None or check(raw):
        return Span(start, start + len(raw), kind)
    if kind != "card":
        return None
    for other, rx, other_check in _SINGLE[_ORDER.index(kind) + 1 :]:
        m = rx.match(text, start)
        if m is not None and (other_check is None or other_check(m.group())):
            return Span(start, m.end(), other)
    return None


def apply(text: str, spans: list[Span]) -> str:
    if not spans:
        return text
    out, pos = [], 0
    for s in spans:
        out.append(text[pos : s.start])
        out.append(f"[{s.kind.upper()}]")
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


def mask(text: str, kinds: Iterable[str] | None = None) -> str:
    """Replace every detected PII item by a `[KIND]` placeholder."""
    if not text:
        return text
    return apply(text, find(text, kinds))
