from __future__ import annotations

from pathlib import Path

import pytest
from rails_support import write_rails

from rails.config import RailsConfigError, read_rails_dir
from rails.engine import RailsEngine


def _error(tmp_path: Path, guard_yml: str, **files: str) -> str:
    write_rails(tmp_path, guard_yml, **files)
    with pytest.raises(RailsConfigError) as info:
        RailsEngine.load(tmp_path)
    return str(info.value)


def test_unknown_key_is_named_with_file_and_line(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        """\
        input:
          labels:
            crime: {action: refuse}
          patterns:
            - name: secrets
              keywords: [password]
              action: refuse
              colour: red
        """,
    )
    assert msg == f"{tmp_path / 'guard.yml'}:8: input.patterns.0.colour: unknown key"


def test_unknown_label_and_missing_field_are_reported_together(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        """\
        input:
          labels:
            violense: {action: refuse}
            medical_advice: {action: safe_complete}
        """,
    )
    lines = msg.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'guard.yml'}:3: input.labels.violense: Input should be")
    assert lines[1] == (
        f"{tmp_path / 'guard.yml'}:4: input.labels.medical_advice: action 'safe_complete' needs 'instruction'"
    )


def test_bad_regex_names_the_pattern_line(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        """\
        output:
          patterns:
            - name: broken
              action: refuse
              regex: ["(unclosed"]
        """,
    )
    assert msg.startswith(f"{tmp_path / 'guard.yml'}:5: output.patterns.0.regex: regex '(unclosed' does not compile")


def test_tenant_mapped_to_unknown_profile_is_rejected(tmp_path: Path) -> None:
    msg = _error(
        tmp_path,
        """\
        tenants: {acme: mars}
        profiles:
          eu: {}
        """,
    )
    assert "tenant 'acme' maps to unknown profile 'mars'" in msg
    assert msg.startswith(f"{tmp_path / 'guard.yml'}:1:")


def test_yaml_syntax_error_and_nemo_config_shape_are_reported(tmp_path: Path) -> None:
    assert _error(tmp_path, "input: [unclosed\n").startswith(f"{tmp_path / 'guard.yml'}:2: invalid YAML")
    msg = _error(tmp_path, "{}\n", config__yml="rails:\n  input:\n    flows: guard check input\n")
    assert msg.startswith(f"{tmp_path / 'config.yml'}:3: rails.input.flows: Input should be a valid list")


def test_action_specific_fields_are_checked(tmp_path: Path) -> None:
    msg = _error(tmp_path, "input:\n  labels:\n    crime: {action: disclaim, text: careful, message: nope}\n")
    assert "'message' only applies to action 'refuse', not 'disclaim'" in msg


def test_rails_hash_is_stable_and_ignores_cases_file(tmp_path: Path) -> None:
    write_rails(tmp_path, "allow_empty: true\ninput: {}\n")
    first = read_rails_dir(tmp_path).rails_hash
    (tmp_path / "cases.yml").write_text("cases: []\n")
    assert read_rails_dir(tmp_path).rails_hash == first
    (tmp_path / "guard.yml").write_text("allow_empty: true\nshadow: true\n")
    assert read_rails_dir(tmp_path).rails_hash != first
