"""Policy regexes cannot stall the event loop: RE2 runs them in linear time, the rest is rejected at check."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from rails_support import exchange, write_rails

from rails.engine import RailsEngine

NESTED = "^(\\\\w+\\\\s?)*$"  # YAML-escaped `^(\w+\s?)*$`: exponential in Python's re on "aaaa...!"
LOOKAHEAD = "^(\\\\w+\\\\s?)*(?=!)$"  # the same with a look-ahead: only a backtracking engine can run it


def test_catastrophic_regex_that_needs_backtracking_is_rejected_at_check(tmp_path: Path) -> None:
    write_rails(
        tmp_path, f'input:\n  patterns:\n    - name: words\n      action: refuse\n      regex: ["{LOOKAHEAD}"]\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "guard.cli", "rails", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    line = out.stderr.strip()
    assert line.startswith(f"error: {tmp_path / 'guard.yml'}:5: input.patterns.0.regex")
    assert "'^(\\\\w+\\\\s?)*(?=!)$' cannot run in linear time" in line
    assert "Traceback" not in out.stderr


async def test_nested_quantifier_runs_in_linear_time_on_an_adversarial_message(tmp_path: Path) -> None:
    write_rails(tmp_path, f'input:\n  patterns:\n    - name: words\n      action: refuse\n      regex: ["{NESTED}"]\n')
    engine = RailsEngine.load(tmp_path)
    t0 = time.perf_counter()
    verdict = await engine.check_input(exchange("a" * 5000 + "!"))  # Python's re: 2^5000 paths
    assert time.perf_counter() - t0 < 1.0
    assert verdict.block is None
    matched = await engine.check_input(exchange("just some words"))
    assert matched.block is not None and matched.block.rail == "pattern:words"


async def test_keywords_keep_unicode_word_boundaries(tmp_path: Path) -> None:
    write_rails(
        tmp_path, 'input:\n  patterns:\n    - {name: drink, action: refuse, keywords: ["café"], regex: ["thé+"]}\n'
    )
    engine = RailsEngine.load(tmp_path)
    assert (await engine.check_input(exchange("un CAFÉ noir"))).block is not None
    assert (await engine.check_input(exchange("du théé"))).block is not None
    assert (await engine.check_input(exchange("cafés"))).block is None
