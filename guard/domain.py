"""What a model answers, in the project's own terms: choices with text and tool calls, stream deltas.

The backends translate their wire format into these; the pipeline and the rails only see these; `guard.wire`
writes them back out. Upstream payloads that the guard never inspects (a chunk's tool-call fragments, logprobs,
the upstream's body) ride along as opaque values so that they can be passed on exactly as they came.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard.wire import Usage

BLOCKED = "content_filter"
# An upstream JSON object the guard passes on without reading its values (a body, a chunk's envelope).
JsonObject = dict[str, object]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked the client to make (`legacy`: the pre-tools `function_call` field)."""

    name: str
    arguments: str
    id: str | None = None
    legacy: bool = False

    @property
    def text(self) -> str:
        """What the output rails read: the function name and its arguments, as one text."""
        return f"{self.name}({self.arguments})"


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of the conversation. `source` is the client's own message, kept so that an unchanged turn is
    forwarded exactly as it came (images, names, fields the guard does not know); `plain` says whether its
    content was a plain string (only those are rewritten in place by redaction and instructions)."""

    role: str
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    plain: bool = True
    source: object = None

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", text)


@dataclass(slots=True)
class Answer:
    """One choice of a reply. `changed` is set when a rail rewrote or blocked it (its text then replaces the
    upstream's); an unchanged answer goes to the client exactly as the model sent it."""

    index: int = 0
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None  # the model's own refusal field (structured outputs)
    finish_reason: str = "stop"
    changed: bool = False

    @property
    def blocked(self) -> bool:
        return self.changed and self.finish_reason == BLOCKED

    @property
    def tool_only(self) -> bool:
        """Only tool calls, no text: nothing a refusal detector could read."""
        return bool(self.tool_calls) and not self.text.strip()


@dataclass(slots=True)
class ModelReply:
    choices: list[Answer]
    usage: Usage | None = None
    body: JsonObject | None = None  # the upstream's parsed body (id, system_fingerprint, logprobs, ...)
    raw: bytes | None = None  # and its bytes, sent on unchanged when no rail changed any choice

    @classmethod
    def of_text(cls, text: str, finish_reason: str = "stop", usage: Usage | None = None) -> ModelReply:
        return cls([Answer(text=text, finish_reason=finish_reason)], usage)

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason if self.choices else "stop"


@dataclass(slots=True)
class Delta:
    """A piece of one choice in a stream. `tool_calls` and `logprobs` are the upstream's fragments as sent."""

    index: int = 0
    text: str = ""
    refusal: str = ""
    tool_calls: list[object] = field(default_factory=list)
    function_call: list[object] = field(default_factory=list)
    logprobs: list[object] | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class StreamEvent:
    """What one network read of a stream carried: deltas per choice, the usage, and (first event only) the
    upstream's chunk envelope (id, created, model, system_fingerprint and any field the guard does not know)."""

    deltas: list[Delta] = field(default_factory=list)
    usage: Usage | None = None
    envelope: JsonObject | None = None
    raw: bytes = b""  # the upstream's bytes for this event as they came (an HTTP upstream's complete SSE lines)

    @classmethod
    def of_text(cls, text: str = "", finish_reason: str | None = None, usage: Usage | None = None) -> StreamEvent:
        return cls([Delta(text=text, finish_reason=finish_reason)] if text or finish_reason else [], usage)


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A piece of a stream the client gets exactly as the upstream sent it: no output rule could hold back or
    change any of the answer, so the proxy relays the upstream's bytes instead of writing its own frames."""

    data: bytes


def assemble_tool_calls(tool_calls: Sequence[object], function_call: Sequence[object] = ()) -> tuple[ToolCall, ...]:
    """Tool calls from streamed fragments: `tool_calls` pieces (`{"index", "id", "function": {"name",
    "arguments"}}`) and legacy `function_call` pieces (`{"name", "arguments"}`), in the order made."""
    calls: dict[object, dict[str, Any]] = {}
    for key, fn, call_id in _fragments(tool_calls, function_call):
        call = calls.setdefault(key, {"id": None, "name": "", "arguments": ""})
        call["id"] = call_id or call["id"]
        call["name"] += fn.get("name") or ""
        call["arguments"] += fn.get("arguments") or ""
    return tuple(ToolCall(c["name"], c["arguments"], c["id"], key == "legacy") for key, c in calls.items())


_Fragment = tuple[object, dict[str, Any], str | None]  # (call key, function part, call id)


def _fragments(tool_calls: Sequence[object], function_call: Sequence[object]) -> list[_Fragment]:
    out: list[_Fragment] = []
    for frag in tool_calls:
        if isinstance(frag, dict) and isinstance(frag.get("function"), dict):
            out.append((frag.get("index", 0), frag["function"], frag.get("id")))
    out += [("legacy", frag, None) for frag in function_call if isinstance(frag, dict)]
    return out
