"""One refusal judgement: the proxy's over-refusal flag, the retraining gate and the pair builder share
guard/refusal.py and its pattern list (guard/refusal.yml); no other refusal pattern list may appear."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from guard.refusal import HEAD_THRESHOLD, REFUSAL_FILE, RefusalConfigError, load_detector, shipped

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("guard", "rails", "finetune", "scripts", "bench")
# A string that looks like a regex (escapes or groups) and names a refusal phrasing.
_REGEXY = re.compile(r"\\b|\(\?:|\\s|\[\^?'")
_REFUSAL_WORDS = re.compile(r"sorry|can(?:\W{0,8}no)?\W{0,8}t\b|cannot|unable to|decline|as an AI", re.I)


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def refusal_pattern_literals() -> list[str]:
    found = []
    for d in CODE_DIRS:
        for path in (ROOT / d).rglob("*.py"):
            for line, s in _string_constants(path):
                if _REGEXY.search(s) and _REFUSAL_WORDS.search(s):
                    found.append(f"{path.relative_to(ROOT)}:{line}: {s[:80]!r}")
    return found


def test_no_refusal_pattern_list_lives_outside_guard_refusal_yml() -> None:
    assert refusal_pattern_literals() == []


def test_the_guard_finds_a_refusal_pattern_planted_in_code(tmp_path: Path) -> None:
    planted = tmp_path / "other.py"
    planted.write_text('PATTERNS = [r"\\bI(?:\'m| am) sorry\\b", "plain text about sorry"]\n')
    strings = [s for _, s in _string_constants(planted)]
    assert [s for s in strings if _REGEXY.search(s) and _REFUSAL_WORDS.search(s)] == [r"\bI(?:'m| am) sorry\b"]


def test_the_proxy_the_gate_and_the_pair_builder_use_the_one_detector() -> None:
    from rails.compiled import compile_refusal
    from rails.policy import RefusalDetection

    proxy = compile_refusal(RefusalDetection())
    assert proxy is not None and proxy.rx is shipped().rx and proxy.head_threshold == HEAD_THRESHOLD
    cycle = (ROOT / "finetune" / "cycle.py").read_text()
    assert "shipped().with_head(HEAD_THRESHOLD)" in cycle and "is_refusal=lambda text: flags([text])[0]" in cycle
    assert "refusals" in cycle.split("report = compare(")[1].split(")")[0]


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I\u2019m sorry, I cannot assist with that request.", True),
        ("Sorry, I can't do that.", True),
        ("As an AI, I am not able to provide that information.", True),
        ("I must respectfully decline.", True),
        ("My guidelines prohibit me from writing that.", True),
        ("I can't help but notice the weather is lovely.", False),
        ("To kill a process, run `kill PID`. You can't undo it, so check the PID first.", False),
        ("I'm sorry to hear your parcel is late. Unfortunately we cannot ship today.", False),
        ("Sure! Budgeting starts with tracking what you spend each month.", False),
        ("Step one is the hardest. " * 20 + "I'm sorry, but I can't help with that.", False),  # past the opening
    ],
)
def test_patterns_judge_the_opening_of_an_answer(answer: str, refused: bool) -> None:
    assert shipped()(answer) is refused


def test_the_refusal_head_counts_only_at_or_over_its_threshold() -> None:
    d = shipped().with_head(0.99)
    assert d.judge("Here is how.", 0.995) == 0.995
    assert d.judge("Here is how.", 0.98) is None
    assert d.judge("I cannot assist with that.", 0.1) == 1.0
    assert shipped().judge("Here is how.", 0.999) is None  # patterns only
    assert d.flags(["Here is how.", "Paris."], [0.999, 0.2]) == [True, False]


def test_profile_patterns_are_added_in_re2() -> None:
    d = shipped().with_patterns([r"\bnope\b"])
    assert d("Nope, not today.") and d("I cannot assist with that.") and not d("Paris.")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("patterns: ['ok']\nscan_charz: 10\n", r"refusal\.yml: scan_charz: Extra inputs"),
        ("patterns: ['(unclosed']\n", r"refusal\.yml: patterns: "),
        ("patterns: []\n", r"refusal\.yml: patterns: List should have at least 1 item"),
        (None, "no such refusal pattern file"),
    ],
)
def test_a_bad_pattern_file_names_the_file_and_key(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "refusal.yml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RefusalConfigError, match=message):
        load_detector(path)
    assert REFUSAL_FILE.name == "refusal.yml"
