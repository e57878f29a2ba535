"""Critique and revise (Constitutional AI, Bai et al. 2022): a better `chosen` for a benign request the model
refused and no reviewer corrected.

The model (the local one, or the upstream when one is configured) first critiques the refusal against the rails
profile's `principles`, then rewrites it into the answer it should have given. The revision is only a proposal:
the pair builder keeps it when the output rails pass it and the refusal detector does not call it a refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Messages = list[dict[str, str]]
Generate = Callable[[Messages], str]  # one answer to a conversation

CRITIQUE = (
    "Here is a request and an assistant's reply.\n\nRequest: {request}\n\nReply: {reply}\n\n"
    "Principles:\n{principles}\n\nWhich of the principles does the reply break, and what should it have said "
    "instead? Answer in two sentences."
)
REVISE = (
    "Request: {request}\n\nCritique of an earlier reply: {critique}\n\nWrite the reply the assistant should have "
    "given, following the principles:\n{principles}\n\nWrite only the reply."
)


def _user_text(messages: Messages) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def revise(messages: Messages, refusal: str, principles: Sequence[str], generate: Generate) -> str | None:
    """The rewritten answer, or None when there are no principles to revise against or nothing came back."""
    if not principles:
        return None
    rules = "\n".join(f"- {p}" for p in principles)
    request = _user_text(messages)
    critique = generate(
        [{"role": "user", "content": CRITIQUE.format(request=request, reply=refusal, principles=rules)}]
    )
    revision = generate(
        [{"role": "user", "content": REVISE.format(request=request, critique=critique.strip(), principles=rules)}]
    )
    return revision.strip() or None


def upstream_generate(url: str, api_key: str | None, model: str, timeout_s: float = 60.0) -> Generate:
    """Answers from an OpenAI-compatible chat API (the proxy's upstream, called directly: not through the
    guard, whose rails would judge the critique prompt itself)."""
    import httpx

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    def generate(messages: Messages) -> str:
        r = httpx.post(
            f"{url.rstrip('/')}/chat/completions",
            json={"model": model, "messages": messages, "temperature": 0},
            headers=headers,
            timeout=timeout_s,
        )
        r.raise_for_status()
        return str(r.json()["choices"][0]["message"].get("content") or "")

    return generate
