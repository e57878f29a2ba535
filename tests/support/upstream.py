"""A behaving fake OpenAI chat API for tests (serve it with `ServedApp`).

The model name picks the behaviour; the last user message picks the answer:
- `gpt-fake`: answers `echo: <last user message>`, or exactly `<text>` when the message is `say: <text>`
  (tests choose the model's words, e.g. a harmful continuation for the rails tests), or `<text>` decoded
  from ROT13 when it is `say-rot13: <text>` (an answer that input checks cannot see coming). With `n` > 1,
  choice i says the i-th of the texts separated by ` ## ` (the last one repeats). Other messages:
  `tool: <name> <json args>` (several joined by ` || `: parallel calls) answers with tool calls only;
  `function: <name> <json args>` with a legacy `function_call`; `refuse: <text>` with the `refusal` field.
  `logprobs: true` adds a logprob per word. Every answer has its own id, a `system_fingerprint`, a
  `service_tier` and usage details; streamed tool-call arguments come in 7-character fragments;
- `fake-slow`: waits `SLOW_S` before answering (longer than the proxy's read timeout in tests);
- `fake-stall`: streams one chunk, then stalls for `SLOW_S`;
- `fake-5xx`: HTTP 500 with an OpenAI error body;
- `fake-malformed`: HTTP 200 with a truncated JSON body;
- `fake-badchunk`: streams one good chunk, then an unreadable one;
- `fake-long`: streams `LONG_CHUNKS` chunks slowly and records in `state.streams[<message>]` whether
  the stream was `completed` or `cancelled` (client went away);
- `fake-hold`: holds the request for `HOLD_S` before answering (streamed or not, as `gpt-fake`) and records in
  `state.streams[<message>]` whether it `completed` or was `cancelled` (the caller hung up while it waited);
- `fake-notsse`: answers a stream request with HTTP 200 and a body that is not server-sent events: a whole
  chat completion as JSON (an upstream that ignores `stream`), or an HTML page when the message is `html`;
- `fake-truncated`: streams the role chunk and the words, then ends the body: no finish chunk, no `[DONE]`;
- `fake-errorframe`: streams the role chunk and the words, then an error event (`data: {"error": ...}`, whose
  message names an internal host) and `[DONE]`; with an empty answer (`say:`), only the error event;
- `fake-400`, `fake-429`, `fake-503`: those statuses with an OpenAI error body (param and code set) and the
  headers clients back off with (`retry-after`, `x-ratelimit-*`, `x-request-id`);
- `fake-flaky`: 429 with `retry-after: 0` for the first `FLAKY_FAILURES` requests per message, then answers;
- any other model: HTTP 404 `model_not_found` (with `x-request-id`).
Stream chunks are split per word; `stream_options.include_usage` adds a usage chunk.

A yes/no moderation prompt (NeMo's self-check tasks end with "(Yes or No)?") is answered like a small
moderator: "Yes" (block) when the quoted message contains one of `HARMFUL_WORDS`, else "No". NeMo's
user-intent prompt (k-shot `user "..."` / intent pairs, ending with the user's message) gets the intent of
an example with the same words, else "ask general question".
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ECHO = "gpt-fake"
SLOW = "fake-slow"
STALL = "fake-stall"
SERVER_ERROR = "fake-5xx"
MALFORMED = "fake-malformed"
BAD_CHUNK = "fake-badchunk"
LONG = "fake-long"
BAD_REQUEST = "fake-400"
RATE_LIMITED = "fake-429"
OVERLOADED = "fake-503"
FLAKY = "fake-flaky"
HOLD = "fake-hold"
NOT_SSE = "fake-notsse"
TRUNCATED = "fake-truncated"
ERROR_FRAME = "fake-errorframe"
MODELS = (
    ECHO,
    SLOW,
    STALL,
    SERVER_ERROR,
    MALFORMED,
    BAD_CHUNK,
    LONG,
    BAD_REQUEST,
    RATE_LIMITED,
    OVERLOADED,
    FLAKY,
    HOLD,
    NOT_SSE,
    TRUNCATED,
    ERROR_FRAME,
)
FLAKY_FAILURES = 1
FINGERPRINT = "fp_fake123"
ARG_FRAGMENT = 7

HARMFUL_WORDS = ("bomb", "weapon", "slur", "stalk", "hack into", "poison", "kill")
SLOW_S = 3.0
LONG_CHUNKS = 2000
LONG_CHUNK_INTERVAL_S = 0.01
HOLD_S = 20.0
INTERNAL_ERROR_TEXT = "shard gpu-7 at 10.0.3.7:9000 ran out of memory"


@dataclass
class Received:
    body: dict[str, Any]
    raw: bytes
    authorization: str | None


@dataclass
class UpstreamState:
    requests: list[Received] = field(default_factory=list)
    streams: dict[str, str] = field(default_factory=dict)  # fake-long/fake-hold tag -> "completed" | "cancelled"
    attempts: dict[str, int] = field(default_factory=dict)  # fake-flaky: requests seen per message
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def stream_ended(self, tag: str, outcome: str) -> None:
        with self._changed:
            self.streams[tag] = outcome
            self._changed.notify_all()

    def wait_stream(self, tag: str, timeout_s: float = 10.0) -> str | None:
        """The outcome of the `fake-long` or `fake-hold` request tagged `tag`, waiting until it ended (None on
        timeout)."""
        with self._changed:
            self._changed.wait_for(lambda: tag in self.streams, timeout_s)
            return self.streams.get(tag)


def last_user(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = users[-1].get("content", "") if users else ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def reply_text(body: dict[str, Any]) -> str:
    content = last_user(body)
    if "(Yes or No)" in content:
        quoted = " ".join(re.findall(r'"([^"]*)"', content)).lower()
        return "Yes" if any(w in quoted for w in HARMFUL_WORDS) else "No"
    asked = re.search(r'\nuser "([^"]*)"\s*$', content)
    if asked:
        shots = {q.lower(): intent.strip() for q, intent in re.findall(r'user "([^"]*)"\n  ([^\n]+)', content)}
        return "  " + shots.get(asked.group(1).lower(), "ask general question")
    if content.startswith("say-rot13:"):
        return codecs.decode(content[10:].removeprefix(" "), "rot13")
    if content.startswith("say:"):
        return content[4:].removeprefix(" ")
    return f"echo: {content}"


def _error(
    status: int, message: str, type_: str, code: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}},
        status,
        headers={"x-request-id": f"req_{uuid.uuid4().hex[:12]}", **(headers or {})},
    )


RATE_HEADERS = {
    "retry-after": "7",
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "7s",
}


def _status_error(model: str) -> JSONResponse | None:
    if model == BAD_REQUEST:
        return _error(
            400,
            "This model's maximum context length is 8 tokens.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        )
    if model == RATE_LIMITED:
        return _error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", headers=RATE_HEADERS)
    if model == OVERLOADED:
        return _error(
            503, "The engine is currently overloaded", "server_error", "overloaded", headers={"retry-after": "3"}
        )
    return None


def _calls(spec: str) -> list[dict[str, Any]]:
    """`name {json} || name {json}` -> OpenAI tool calls."""
    out = []
    for i, part in enumerate(spec.split(" || ")):
        name, _, args = part.strip().partition(" ")
        out.append(
            {
                "id": f"call_{i}_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {"name": name, "arguments": args or "{}"},
            }
        )
    return out


def answers(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant messages of the reply, one per choice."""
    content = last_user(body)
    n = int(body.get("n") or 1)
    if content.startswith("tool:"):
        return [{"role": "assistant", "content": None, "tool_calls": _calls(content[5:])} for _ in range(n)]
    if content.startswith("function:"):
        call = _calls(content[9:])[0]["function"]
        return [{"role": "assistant", "content": None, "function_call": call} for _ in range(n)]
    if content.startswith("refuse:"):
        return [{"role": "assistant", "content": None, "refusal": content[7:].strip()} for _ in range(n)]
    texts = reply_text(body).split(" ## ")
    return [{"role": "assistant", "content": texts[min(i, len(texts) - 1)], "refusal": None} for i in range(n)]


def _finish(message: dict[str, Any]) -> str:
    return "tool_calls" if message.get("tool_calls") else "function_call" if message.get("function_call") else "stop"


def _logprobs(text: str) -> dict[str, Any]:
    return {
        "content": [
            {"token": w, "logprob": -0.25, "bytes": list(w.encode()), "top_logprobs": []}
            for w in re.findall(r"\S+\s*", text)
        ],
        "refusal": None,
    }


def _usage(body: dict[str, Any], text: str) -> dict[str, Any]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion = len(text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _chunk(
    cid: str,
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> bytes:
    choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    data = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [choice],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


def _completion(body: dict[str, Any], model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    choices = []
    for i, msg in enumerate(messages):
        choice = {"index": i, "message": msg, "logprobs": None, "finish_reason": _finish(msg)}
        if body.get("logprobs"):
            choice["logprobs"] = _logprobs(msg.get("content") or "")
        choices.append(choice)
    return {
        "id": f"chatcmpl-up{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "service_tier": "default",
        "choices": choices,
        "usage": _usage(body, " ".join(m.get("content") or "" for m in messages)),
    }


async def _hold(request: Request, state: UpstreamState, tag: str) -> None:
    """Wait `HOLD_S`, or until the caller hangs up; record which (uvicorn does not cancel a handler whose client
    left, so it is watched here)."""
    deadline = time.monotonic() + HOLD_S
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            state.stream_ended(tag, "cancelled")
            return
        await asyncio.sleep(0.01)
    state.stream_ended(tag, "completed")


def create_upstream(state: UpstreamState | None = None) -> Starlette:
    state = state or UpstreamState()

    async def completions(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid JSON", "invalid_request_error", "invalid_json")
        state.requests.append(Received(body, raw, request.headers.get("authorization")))
        model = body.get("model")
        if model not in MODELS:
            return _error(
                404, f"The model '{model}' does not exist", "invalid_request_error", "model_not_found", "model"
            )
        if model == SERVER_ERROR:
            return _error(500, "the fake upstream failed on purpose", "server_error", "internal_error")
        if model == MALFORMED:
            return Response(b'{"id": "x", "choices": [{"message": ', media_type="application/json")
        status = _status_error(model)
        if status is not None:
            return status
        if model == FLAKY:
            tag = last_user(body)
            state.attempts[tag] = state.attempts.get(tag, 0) + 1
            if state.attempts[tag] <= FLAKY_FAILURES:
                return _error(
                    429, "Rate limit reached", "requests", "rate_limit_exceeded", headers={"retry-after": "0"}
                )
        if model == SLOW:
            await asyncio.sleep(SLOW_S)
        if model == HOLD:
            await _hold(request, state, last_user(body))
        if body.get("stream"):
            if model in (ECHO, FLAKY, HOLD):
                return StreamingResponse(_stream_answers(body), media_type="text/event-stream")
            if model == NOT_SSE:
                if last_user(body) == "html":
                    return Response(
                        b"<html><body><h1>Service Temporarily Unavailable</h1></body></html>\n" * 3,
                        media_type="text/html",
                    )
                return JSONResponse(_completion(body, model, answers(body)))
            return StreamingResponse(_stream(state, body, reply_text(body)), media_type="text/event-stream")
        return JSONResponse(_completion(body, model, answers(body)))

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]}
        )

    async def text_completions(request: Request) -> Response:
        body = json.loads(await request.body())
        state.requests.append(Received(body, b"", request.headers.get("authorization")))
        prompt = body.get("prompt") or ""
        text = prompt[4:].strip() if prompt.startswith("say:") else f"echo: {prompt}"
        cid, created, model = f"cmpl-up{uuid.uuid4().hex[:16]}", int(time.time()), body.get("model")
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": FINGERPRINT,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
                    "usage": _usage({"messages": [{"content": prompt}]}, text),
                }
            )

        async def chunks() -> AsyncIterator[bytes]:
            for piece in [*re.findall(r"\S+\s*", text), None]:
                choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": None if piece else "stop"}
                frame = {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                }
                yield f"data: {json.dumps(frame)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        body = json.loads(await request.body())
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(t))), 0.5, -0.25]}
            for i, t in enumerate(inputs)
        ]
        return JSONResponse(
            {
                "object": "list",
                "model": body.get("model"),
                "data": data,
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            }
        )

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", text_completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
    app.state.fake = state
    return app


async def _stream_answers(body: dict[str, Any]) -> AsyncIterator[bytes]:
    """Every choice streamed in turn: words (with logprobs when asked), tool-call fragments, refusals."""
    cid, model = f"chatcmpl-up{uuid.uuid4().hex[:16]}", body["model"]
    messages = answers(body)
    for i, msg in enumerate(messages):
        yield _chunk(cid, model, {"role": "assistant", "content": None if msg.get("content") is None else ""}, index=i)
        for word in re.findall(r"\S+\s*", msg.get("content") or ""):
            lp = _logprobs(word) if body.get("logprobs") else None
            yield _chunk(cid, model, {"content": word}, index=i, logprobs=lp)
        if msg.get("refusal"):
            yield _chunk(cid, model, {"refusal": msg["refusal"]}, index=i)
        for k, call in enumerate(msg.get("tool_calls") or ()):
            args = call["function"]["arguments"]
            head = {
                "index": k,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            yield _chunk(cid, model, {"tool_calls": [head]}, index=i)
            for j in range(0, len(args), ARG_FRAGMENT):
                piece = {"index": k, "function": {"arguments": args[j : j + ARG_FRAGMENT]}}
                yield _chunk(cid, model, {"tool_calls": [piece]}, index=i)
        if msg.get("function_call"):
            fn = msg["function_call"]
            yield _chunk(cid, model, {"function_call": {"name": fn["name"], "arguments": ""}}, index=i)
            for j in range(0, len(fn["arguments"]), ARG_FRAGMENT):
                yield _chunk(
                    cid, model, {"function_call": {"arguments": fn["arguments"][j : j + ARG_FRAGMENT]}}, index=i
                )
        yield _chunk(cid, model, {}, _finish(msg), index=i)
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": _usage(body, " ".join(m.get("content") or "" for m in messages)),
        }
        yield f"data: {json.dumps(usage)}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def _stream(state: UpstreamState, body: dict[str, Any], text: str) -> AsyncIterator[bytes]:
    cid, model = f"chatcmpl-up{uuid.uuid4().hex[:16]}", body["model"]
    if model == ERROR_FRAME and not text:
        yield _error_frame()
        return
    yield _chunk(cid, model, {"role": "assistant", "content": ""})
    if model == LONG:
        async for piece in _long(state, cid, model, last_user(body)):
            yield piece
        return
    for i, word in enumerate(re.findall(r"\S+\s*", text) or [""]):
        yield _chunk(cid, model, {"content": word})
        if model == BAD_CHUNK and i == 0:
            yield b"data: {not json\n\n"
            return
        if model == STALL and i == 0:
            await asyncio.sleep(SLOW_S)
    if model == TRUNCATED:
        return
    if model == ERROR_FRAME:
        yield _error_frame()
        yield b"data: [DONE]\n\n"
        return
    yield _chunk(cid, model, {}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": _usage(body, text),
        }
        yield f"data: {json.dumps(usage)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _error_frame() -> bytes:
    error = {"message": f"The server had an error: {INTERNAL_ERROR_TEXT}", "type": "server_error", "code": None}
    return f"data: {json.dumps({'error': error})}\n\n".encode()


async def _long(state: UpstreamState, cid: str, model: str, tag: str) -> AsyncIterator[bytes]:
    completed = False
    try:
        for i in range(LONG_CHUNKS):
            yield _chunk(cid, model, {"content": f"w{i} "})
            await asyncio.sleep(LONG_CHUNK_INTERVAL_S)
        yield _chunk(cid, model, {}, "stop")
        yield b"data: [DONE]\n\n"
        completed = True
    finally:
        state.stream_ended(tag, "completed" if completed else "cancelled")
