"""A behaving fake OpenAI chat API for tests (serve it with `ServedApp`).

The model name picks the behaviour; the last user message picks the text:
- `gpt-fake`: answers `echo: <last user message>`, or exactly `<text>` when the message is `say: <text>`
  (tests choose the model's words, e.g. a harmful continuation for the rails tests), or `<text>` decoded
  from ROT13 when it is `say-rot13: <text>` (an answer that input checks cannot see coming);
- `fake-slow`: waits `SLOW_S` before answering (longer than the proxy's read timeout in tests);
- `fake-stall`: streams one chunk, then stalls for `SLOW_S`;
- `fake-5xx`: HTTP 500 with an OpenAI error body;
- `fake-malformed`: HTTP 200 with a truncated JSON body;
- `fake-badchunk`: streams one good chunk, then an unreadable one;
- `fake-long`: streams `LONG_CHUNKS` chunks slowly and records in `state.streams[<message>]` whether
  the stream was `completed` or `cancelled` (client went away);
- any other model: HTTP 404 `model_not_found`.
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
MODELS = (ECHO, SLOW, STALL, SERVER_ERROR, MALFORMED, BAD_CHUNK, LONG)

HARMFUL_WORDS = ("bomb", "weapon", "slur", "stalk", "hack into", "poison", "kill")
SLOW_S = 3.0
LONG_CHUNKS = 2000
LONG_CHUNK_INTERVAL_S = 0.01


@dataclass
class Received:
    body: dict[str, Any]
    raw: bytes
    authorization: str | None


@dataclass
class UpstreamState:
    requests: list[Received] = field(default_factory=list)
    streams: dict[str, str] = field(default_factory=dict)  # fake-long tag -> "completed" | "cancelled"
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def stream_ended(self, tag: str, outcome: str) -> None:
        with self._changed:
            self.streams[tag] = outcome
            self._changed.notify_all()

    def wait_stream(self, tag: str, timeout_s: float = 10.0) -> str | None:
        """The outcome of the `fake-long` stream tagged `tag`, waiting until it ended (None on timeout)."""
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


def _error(status: int, message: str, type_: str, code: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status)


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(data)}\n\n".encode()


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
            return _error(404, f"The model '{model}' does not exist", "invalid_request_error",
                          "model_not_found", "model")
        if model == SERVER_ERROR:
            return _error(500, "the fake upstream failed on purpose", "server_error", "internal_error")
        if model == MALFORMED:
            return Response(b'{"id": "x", "choices": [{"message": ', media_type="application/json")
        if model == SLOW:
            await asyncio.sleep(SLOW_S)
        text = reply_text(body)
        if body.get("stream"):
            return StreamingResponse(_stream(state, body, text), media_type="text/event-stream")
        return JSONResponse({
            "id": "chatcmpl-upstream", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": _usage(body, text),
        })

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]})

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"])])
    app.state.fake = state
    return app


async def _stream(state: UpstreamState, body: dict[str, Any], text: str) -> AsyncIterator[bytes]:
    cid, model = "chatcmpl-upstream", body["model"]
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
    yield _chunk(cid, model, {}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                 "choices": [], "usage": _usage(body, text)}
        yield f"data: {json.dumps(usage)}\n\n".encode()
    yield b"data: [DONE]\n\n"


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
