from __future__ import annotations

from pathlib import Path

from rails_support import write_rails
from typer.testing import CliRunner

from guard.settings import SHIPPED_RAILS
from rails.cli import app

runner = CliRunner()


def test_check_accepts_every_shipped_config() -> None:
    for path in sorted(SHIPPED_RAILS.parent.iterdir()):
        result = runner.invoke(app, ["check", str(path)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"ok: {path} hash=")


def test_check_reports_file_line_and_key_and_exits_2(tmp_path: Path) -> None:
    write_rails(tmp_path, "input:\n  labels:\n    crime: {action: refuse, treshold: 0.5}\n")
    result = runner.invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'guard.yml'}:3: input.labels.crime.treshold: unknown key" in result.output


def test_test_command_reports_which_rail_fired_and_fails_on_mismatch(tmp_path: Path) -> None:
    write_rails(
        tmp_path,
        "input:\n  patterns: [{name: secret, action: refuse, keywords: [xyzzy]}]\n",
        cases__yml="""\
                cases:
                  - {name: magic word is refused, input: "say xyzzy", expect: block, rail: "pattern:secret"}
                  - {name: wrong expectation, input: "hello", expect: block}
                  - {name: documented miss, input: "hi", expect: block, known_issue: "classifier misses it"}
                """,
    )
    result = runner.invoke(app, ["test", str(tmp_path), "cases.yml", "--no-triage"])
    assert result.exit_code == 1
    assert "PASS  magic word is refused: block; rails: pattern:secret" in result.output
    assert "KNOWN documented miss: allow; rails: -" in result.output
    assert "FAIL  wrong expectation: allow; rails: -" in result.output
    assert "expected block, got allow" in result.output
    assert "1/3 cases passed (1 known issue)" in result.output
