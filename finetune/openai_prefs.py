"""Preference pairs in OpenAI's fine-tuning format for the DPO method, for deployments in front of a hosted model:
one JSON object a line, `{"input": {"messages": [...]}, "preferred_output": [assistant message],
"non_preferred_output": [assistant message]}`. The input ends with the user turn both outputs answer."""

from __future__ import annotations

from typing import Any

INPUT_ROLES = ("system", "developer", "user", "assistant")


def openai_row(row: dict[str, Any]) -> dict[str, Any]:
    """A TRL preference row (`prompt`, `chosen`, `rejected` as message lists) in OpenAI's layout."""
    return {
        "input": {"messages": [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]},
        "preferred_output": [{"role": "assistant", "content": m["content"]} for m in row["chosen"]],
        "non_preferred_output": [{"role": "assistant", "content": m["content"]} for m in row["rejected"]],
    }


def layout_errors(row: Any) -> list[str]:
    """What keeps `row` from being a valid line of an OpenAI preference fine-tuning file (empty when valid)."""
    if not isinstance(row, dict):
        return ["a line must be a JSON object"]
    errors = [f"unknown key {k!r}" for k in row if k not in ("input", "preferred_output", "non_preferred_output")]
    inp = row.get("input")
    messages = inp.get("messages") if isinstance(inp, dict) else None
    if not isinstance(messages, list) or not messages:
        return [*errors, "input.messages must be a non-empty list"]
    errors += _messages("input.messages", messages, INPUT_ROLES)
    last = messages[-1]
    if not (isinstance(last, dict) and last.get("role") == "user"):
        errors.append("input.messages must end with the user turn the outputs answer")
    for key in ("preferred_output", "non_preferred_output"):
        out = row.get(key)
        if not isinstance(out, list) or len(out) != 1:
            errors.append(f"{key} must hold exactly one assistant message")
            continue
        errors += _messages(key, out, ("assistant",))
    return errors


def _messages(where: str, messages: list[Any], roles: tuple[str, ...]) -> list[str]:
    errors = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            errors.append(f"{where}[{i}] must be an object with exactly 'role' and 'content'")
        elif m["role"] not in roles:
            errors.append(f"{where}[{i}].role {m['role']!r} is not one of {', '.join(roles)}")
        elif not isinstance(m["content"], str) or not m["content"].strip():
            errors.append(f"{where}[{i}].content must be a non-empty string")
    return errors
