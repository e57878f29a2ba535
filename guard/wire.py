"""OpenAI chat-completions wire format: the one place that knows its shapes."""

from __future__ import annotations

import time
from typing import Any, Literal, TypeVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from guard import domain
from guard.domain import Answer, Message, ModelReply, ToolCall

# A chunk's top-level fields (id, created, model, system_fingerprint, fields the guard does not know), passed on as
# the upstream sent them: the guard never reads the values.
Envelope = domain.JsonObject
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "function_call"]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    # Clients send tool_calls, name, refusal...; keep them so upstreams receive the exact request.
    model_config = ConfigDict(extra="allow")
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.text)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Unknown sampling parameters pass through to the upstream untouched.
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)  # int64, as OpenAI takes it (torch rejects larger)
    user: str | None = None
    # The client's bytes, forwarded verbatim when nothing in the request was rewritten (no re-encoding). A slot,
    # not a pydantic private attribute: those cost about 10 µs per request to set up and read.
    __slots__ = ("_raw",)

    @classmethod
    def parse(cls, body: bytes) -> ChatCompletionRequest:
        return _with_raw(cls.model_validate_json(body), body)

    @property
    def raw(self) -> bytes | None:
        return getattr(self, "_raw", None)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def upstream_body(self, **changes: object) -> Envelope:
        """The request as an upstream gets it, with `changes` (the rewritten messages, stream) applied."""
        body = self.model_dump(exclude_none=True)
        body.update(changes)
        return body


_M = TypeVar("_M", bound=BaseModel)


def _with_raw(model: _M, body: bytes) -> _M:
    object.__setattr__(model, "_raw", body)  # a slot pydantic does not manage (see ChatCompletionRequest)
    return model


class Usage(BaseModel):
    # Details (cached, reasoning, audio tokens...) pass through as the upstream sent them.
    model_config = ConfigDict(extra="allow")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["assistant"] = "assistant"
    content: str | None = None


class Choice(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason | None = "stop"


class ChatCompletion(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return self.choices[0].message.content or "" if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None


class Delta(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "guardtune"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# Client requests <-> domain ----------------------------------------------------------------------------


def messages_from_wire(messages: list[ChatMessage]) -> list[Message]:
    return [_message(m) for m in messages]


def _message(m: ChatMessage) -> Message:
    extra = m.model_extra or {}
    calls = tuple(
        ToolCall(fn.get("name") or "", fn.get("arguments") or "", tc.get("id"))
        for tc in extra.get("tool_calls") or ()
        if isinstance(tc, dict) and isinstance(fn := tc.get("function"), dict)
    )
    call_id = extra.get("tool_call_id")
    return Message(
        m.role,
        m.text,
        calls,
        call_id if isinstance(call_id, str) else None,
        plain=m.content is None or isinstance(m.content, str),
        source=m,
    )


def messages_to_wire(messages: list[Message]) -> list[Envelope]:
    """The conversation for an upstream: each client message as it came unless a rail changed its text."""
    out = []
    for m in messages:
        src = m.source
        if isinstance(src, ChatMessage):
            body = src.model_dump(exclude_none=True)
            if m.text != src.text:
                body["content"] = m.text
        else:
            body = {"role": m.role, "content": m.text}
        out.append(body)
    return out


# Upstream answers -> domain ---------------------------------------------------------------------------


def _object(data: object) -> dict[str, Any]:
    """Parsed JSON that must be an object (its values are read field by field, each checked where used)."""
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    return data


def reply_from_body(data: object, raw: bytes | None = None) -> ModelReply:
    """A chat completion body as the domain reply; raises KeyError/TypeError/ValueError when it is not one."""
    data = _object(data)
    choices = data["choices"]
    if not isinstance(choices, list) or not choices:
        raise ValueError("choices")
    usage = Usage.model_validate(data["usage"]) if data.get("usage") else None
    return ModelReply([_answer(i, c) for i, c in enumerate(choices)], usage, body=data, raw=raw)


def _answer(position: int, choice: dict[str, Any]) -> Answer:
    msg = choice.get("message") or {}
    calls = [
        ToolCall(fn.get("name") or "", fn.get("arguments") or "", tc.get("id"))
        for tc in msg.get("tool_calls") or ()
        if isinstance(tc, dict) and isinstance(fn := tc.get("function"), dict)
    ]
    legacy = msg.get("function_call")
    if isinstance(legacy, dict):
        calls.append(ToolCall(legacy.get("name") or "", legacy.get("arguments") or "", legacy=True))
    content = msg.get("content")
    return Answer(
        index=choice.get("index", position),
        text=content if isinstance(content, str) else "",
        tool_calls=tuple(calls),
        refusal=msg.get("refusal"),
        finish_reason=choice.get("finish_reason") or "stop",
    )


def chunk_parts(data: object, into: dict[int, domain.Delta]) -> Usage | None:
    """One `chat.completion.chunk` added to `into`, the deltas of one read by choice index (the pieces of a
    choice joined, not one Delta per chunk: this runs for every streamed token); returns the chunk's usage."""
    data = _object(data)
    for c in data.get("choices") or ():
        d = c.get("delta") or {}
        text, refusal, calls, fc, lp = (
            d.get("content"),
            d.get("refusal"),
            d.get("tool_calls"),
            d.get("function_call"),
            c.get("logprobs"),
        )
        delta = _delta(into, c.get("index", 0))
        if text:
            delta.text += text
        if refusal:
            delta.refusal += refusal
        if calls:
            delta.tool_calls += calls
        if fc:
            delta.function_call.append(fc)
        if isinstance(lp, dict) and lp.get("content"):
            delta.logprobs = [*(delta.logprobs or ()), *lp["content"]]
        delta.finish_reason = c.get("finish_reason") or delta.finish_reason
    return Usage.model_validate(data["usage"]) if data.get("usage") else None


def _delta(into: dict[int, domain.Delta], index: int) -> domain.Delta:
    delta = into.get(index)
    if delta is None:
        delta = into[index] = domain.Delta(index)
    return delta


def envelope(chunk: dict[str, Any]) -> Envelope:
    """A chunk's envelope: every top-level field but its choices and usage (read from the stream's first chunk
    only: the rest repeat it)."""
    return {k: v for k, v in chunk.items() if k not in _NOT_ENVELOPE}


_NOT_ENVELOPE = frozenset(("choices", "usage"))


# Domain -> client -------------------------------------------------------------------------------------


def completion_body(
    answers: list[Answer], reply: ModelReply | None, *, exchange_id: str, model: str, created: int, usage: Usage | None
) -> bytes:
    """The client's `chat.completion`: the upstream's own body (bytes unchanged when no rail changed a choice,
    else with the changed choices rewritten) or, for the local model and blocked requests, one written here."""
    if reply is not None and reply.body is not None:
        if reply.raw is not None and not any(a.changed for a in answers):
            return reply.raw
        body = dict(reply.body)
        body["choices"] = [_patched(c, a) if a.changed else c for c, a in zip(_choices(body), answers, strict=True)]
        return pydantic_core.to_json(body)
    own: dict[str, Any] = {
        "id": exchange_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [_own_choice(a) for a in answers],
    }
    if usage is not None:
        own["usage"] = usage.model_dump()
    return pydantic_core.to_json(own)  # compact UTF-8, as pydantic dumps it; ~3x faster than json.dumps


def _choices(body: Envelope) -> list[Envelope]:
    choices = body["choices"]
    if not isinstance(choices, list):  # checked when the reply was parsed
        raise TypeError("choices")
    return choices


def _patched(choice: dict[str, Any], answer: Answer) -> dict[str, Any]:
    out = dict(choice)
    msg = dict(choice.get("message") or {})
    msg["content"] = answer.text
    if answer.blocked:
        msg.pop("tool_calls", None)
        msg.pop("function_call", None)
        out["logprobs"] = None  # they described the text that was withheld
    out["message"] = msg
    out["finish_reason"] = answer.finish_reason
    return out


def _own_choice(answer: Answer) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": answer.text}
    calls = [c for c in answer.tool_calls if not c.legacy]
    if calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    return {"index": answer.index, "message": msg, "finish_reason": answer.finish_reason}


def own_envelope(exchange_id: str, model: str, created: int) -> Envelope:
    return {"id": exchange_id, "object": "chat.completion.chunk", "created": created, "model": model}


def chunk_frame(envelope: Envelope, delta: domain.Delta, *, role: bool = False) -> bytes:
    """One `chat.completion.chunk` SSE frame, written directly: it runs once per streamed piece, and this is
    several times cheaper than building and dumping a pydantic chunk."""
    d: dict[str, Any] = {"role": "assistant", "content": delta.text} if role else {}
    if delta.text:
        d["content"] = delta.text
    if delta.refusal:
        d["refusal"] = delta.refusal
    if delta.tool_calls:
        d["tool_calls"] = delta.tool_calls
    if delta.function_call:
        d["function_call"] = _merged_function_call(delta.function_call)
    choice: dict[str, Any] = {"index": delta.index, "delta": d, "finish_reason": delta.finish_reason}
    if delta.logprobs:
        choice["logprobs"] = {"content": delta.logprobs, "refusal": None}
    return b"data: " + pydantic_core.to_json({**envelope, "choices": [choice]}) + b"\n\n"


def usage_frame(envelope: Envelope, usage: Usage) -> bytes:
    return b"data: " + pydantic_core.to_json({**envelope, "choices": [], "usage": usage.model_dump()}) + b"\n\n"


def _merged_function_call(fragments: list[object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for frag in fragments:
        for key in ("name", "arguments"):
            if isinstance(frag, dict) and frag.get(key):
                out[key] = out.get(key, "") + frag[key]
    return out


# Legacy text completions (/v1/completions) ---------------------------------------------------------------


class TextCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=128)
    __slots__ = ("_raw",)  # as in ChatCompletionRequest

    @classmethod
    def parse(cls, body: bytes) -> TextCompletionRequest:
        return _with_raw(cls.model_validate_json(body), body)

    @property
    def raw(self) -> bytes | None:
        return getattr(self, "_raw", None)

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else "\n".join(self.prompt)

    def with_prompt(self, prompt: str) -> bytes:
        return pydantic_core.to_json({**self.model_dump(exclude_none=True), "prompt": prompt})


def text_reply_from_body(data: object, raw: bytes | None = None) -> ModelReply:
    data = _object(data)
    choices = data["choices"]
    if not isinstance(choices, list) or not choices:
        raise ValueError("choices")
    usage = Usage.model_validate(data["usage"]) if data.get("usage") else None
    answers = [
        Answer(index=c.get("index", i), text=c.get("text") or "", finish_reason=c.get("finish_reason") or "stop")
        for i, c in enumerate(choices)
    ]
    return ModelReply(answers, usage, body=data, raw=raw)


def text_chunk_parts(data: object, into: dict[int, domain.Delta]) -> Usage | None:
    """One text-completion chunk added to `into` (as `chunk_parts`)."""
    data = _object(data)
    for c in data.get("choices") or ():
        text = c.get("text")
        delta = _delta(into, c.get("index", 0))
        if text:
            delta.text += text
        delta.finish_reason = c.get("finish_reason") or delta.finish_reason
    return Usage.model_validate(data["usage"]) if data.get("usage") else None


def text_completion_body(
    answers: list[Answer], reply: ModelReply | None, *, exchange_id: str, model: str, created: int
) -> bytes:
    if reply is not None and reply.body is not None:
        if reply.raw is not None and not any(a.changed for a in answers):
            return reply.raw
        body = dict(reply.body)
        body["choices"] = [
            {**c, "text": a.text, "finish_reason": a.finish_reason} if a.changed else c
            for c, a in zip(_choices(body), answers, strict=True)
        ]
        return pydantic_core.to_json(body)
    return pydantic_core.to_json(
        {
            "id": exchange_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": a.index, "text": a.text, "logprobs": None, "finish_reason": a.finish_reason} for a in answers
            ],
        }
    )


def text_chunk_frame(envelope: Envelope, delta: domain.Delta, *, role: bool = False) -> bytes:
    choice = {"index": delta.index, "text": delta.text, "logprobs": None, "finish_reason": delta.finish_reason}
    return b"data: " + pydantic_core.to_json({**envelope, "choices": [choice]}) + b"\n\n"


def sse(payload: BaseModel | str) -> bytes:
    data = payload if isinstance(payload, str) else payload.model_dump_json(exclude_none=True)
    return f"data: {data}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"


class ReadyStatus(BaseModel):
    status: Literal["ready"] = "ready"
    model: str
    model_version: str | None = None
    backend: str
    triage_device: str
    triage_version: str | None = None
    rails_hash: str | None = None
