"""Policy regexes run in RE2: matching time is linear in the text, so no pattern can stall the event loop.

Python's `re` backtracks: a pattern such as `(\\w+\\s?)*$` takes seconds on a 30-character line. RE2 runs
every pattern it accepts in linear time; what it refuses (look-around, back-references) is rejected at load,
naming the pattern, so `guard rails check` catches it before it serves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import re2


class UnsafePattern(ValueError):
    """A regex that only a backtracking engine can run."""


def _options(*, dot_all: bool) -> Any:
    opts = re2.Options()
    opts.case_sensitive = False
    opts.dot_nl = dot_all
    opts.log_errors = False  # the error comes back as an exception; RE2 would also print it to stderr
    return opts


def compile_linear(pattern: str, *, dot_all: bool = False) -> Any:
    """Case-insensitive RE2 pattern; `UnsafePattern` with RE2's reason when it needs backtracking."""
    try:
        return re2.compile(pattern, _options(dot_all=dot_all))
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UnsafePattern(
            f"regex {pattern!r} cannot run in linear time (RE2: {reason}); rewrite it without "
            "look-around or back-references"
        ) from None


def check_linear(pattern: str) -> None:
    """Raise `UnsafePattern` (or report a syntax error the way Python's `re` words it)."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UnsafePattern(f"regex {pattern!r} does not compile: {exc}") from None
    compile_linear(pattern)


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Search with several compiled patterns (keywords in `re`, user regexes in RE2); the first match wins."""

    parts: tuple[Any, ...]

    def search(self, text: str) -> Any:
        for rx in self.parts:
            m = rx.search(text)
            if m is not None:
                return m
        return None
