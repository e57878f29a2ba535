"""Any OpenAI-compatible chat API as the model, over a pooled aiohttp client.

aiohttp rather than httpx: in `bench/proxy_overhead.py` the same proxy reached several times the
throughput with aiohttp as its upstream client (figures in the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pydantic_core

from guard import metrics, wire
from guard.domain import Delta, ModelReply, StreamEvent
from guard.errors import (
    GuardError,
    InvalidRequest,
    ModelNotFound,
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from guard.wire import ChatCompletionRequest, ChatMessage, Usage

_BACKEND = "upstream"


class RateLimited(GuardError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"


class HttpUpstream:
    name = _BACKEND

    def __init__(self, base_url: str, api_key: str | None = None, *, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 60.0, retries: int = 2, max_connections: int = 256) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.retries = retries
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def version(self) -> str | None:
        return None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              headers=self._headers, auto_decompress=True)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpUpstream.start() was not awaited")
        return self._session

    def _body(self, request: ChatCompletionRequest, messages: list[ChatMessage], stream: bool) -> bytes:
        if messages is request.messages and request.raw is not None:
            return request.raw  # unchanged request: forward the client's bytes as they came
        body = request.upstream_body(messages=[m.model_dump(exclude_none=True) for m in messages])
        body["stream"] = stream
        return json.dumps(body).encode()

    async def _post(self, body: bytes) -> aiohttp.ClientResponse:
        """POST with retries on connection failures only: the request never reached the upstream."""
        for attempt in range(self.retries + 1):
            try:
                resp = await self.session.post(self.url, data=body)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Connection refused or not accepted in time: the request never left, so retrying is safe.
                if attempt == self.retries:
                    metrics.UPSTREAM_ERRORS.labels(_BACKEND, "connect").inc()
                    reason = "connection timed out" if isinstance(exc, TimeoutError) else exc.strerror or exc
                    raise UpstreamUnavailable(f"upstream {self.base_url} unreachable: {reason}") from None
                await asyncio.sleep(0.05 * 2**attempt)
            except (TimeoutError, aiohttp.ServerTimeoutError):
                metrics.UPSTREAM_ERRORS.labels(_BACKEND, "timeout").inc()
                raise UpstreamTimeout(f"upstream {self.base_url} did not answer in time") from None
            except aiohttp.ClientError as exc:
                metrics.UPSTREAM_ERRORS.labels(_BACKEND, "connect").inc()
                raise UpstreamUnavailable(f"upstream {self.base_url} failed: {exc}") from None
            else:
                if resp.status >= 400:
                    await self._raise_for_status(resp)
                return resp
        raise AssertionError("unreachable")

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        try:
            text = await resp.text()
        finally:
            resp.release()
        message = text[:500]
        with contextlib.suppress(ValueError, KeyError, TypeError):
            message = json.loads(text)["error"]["message"]
        metrics.UPSTREAM_ERRORS.labels(_BACKEND, f"http_{resp.status // 100}xx").inc()
        if resp.status == 404:
            raise ModelNotFound(f"upstream: {message}", param="model")
        if resp.status in (400, 422):
            raise InvalidRequest(f"upstream rejected the request: {message}")
        if resp.status == 429:
            raise RateLimited(f"upstream rate limit: {message}")
        if resp.status in (401, 403):
            raise UpstreamBadResponse(f"upstream refused the proxy's credentials ({resp.status}): {message}")
        raise UpstreamBadResponse(f"upstream returned HTTP {resp.status}: {message}")

    async def complete(self, request: ChatCompletionRequest, messages: list[ChatMessage]) -> ModelReply:
        resp = await self._post(self._body(request, messages, stream=False))
        try:
            raw = await resp.read()
            data = pydantic_core.from_json(raw)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            metrics.UPSTREAM_ERRORS.labels(_BACKEND, "timeout").inc()
            raise UpstreamTimeout(f"upstream {self.base_url} stopped answering") from None
        except (ValueError, aiohttp.ClientError) as exc:
            metrics.UPSTREAM_ERRORS.labels(_BACKEND, "malformed").inc()
            raise UpstreamBadResponse(f"upstream sent an unreadable body: {exc}") from None
        finally:
            resp.release()
        return _reply(data, raw)

    async def stream(self, request: ChatCompletionRequest, messages: list[ChatMessage]) -> AsyncIterator[StreamEvent]:
        """One event per network read: chunks that arrived together are merged, so a proxy that falls
        behind does less work per token instead of more (a token-paced upstream still gives one each)."""
        resp = await self._post(self._body(request, messages, stream=True))
        tail = b""
        done = False
        try:
            async for data in resp.content.iter_any():
                if done:
                    continue  # after [DONE], read to the end: a fully read response returns to the pool
                lines = (tail + data).split(b"\n")
                tail = lines.pop()
                event, done, error = _merge(lines)
                if event is not None:
                    yield event
                if error is not None:
                    raise error
        except (TimeoutError, aiohttp.ServerTimeoutError):
            metrics.UPSTREAM_ERRORS.labels(_BACKEND, "timeout").inc()
            raise UpstreamTimeout("upstream stopped streaming") from None
        except aiohttp.ClientError as exc:
            metrics.UPSTREAM_ERRORS.labels(_BACKEND, "disconnect").inc()
            raise UpstreamUnavailable(f"upstream stream broke: {exc}") from None
        finally:
            if done and resp.content.at_eof():
                resp.release()  # keep the connection for the next request
            else:
                resp.close()  # abandoned mid-stream (client gone, error): stop the upstream generating

    async def list_models(self) -> list[dict[str, Any]]:
        try:
            async with self.session.get(f"{self.base_url}/models") as resp:
                if resp.status >= 400:
                    return []
                return list((await resp.json(content_type=None)).get("data", []))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return []


def _reply(data: Any, raw: bytes) -> ModelReply:
    try:
        return wire.reply_from_body(data, raw)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        metrics.UPSTREAM_ERRORS.labels(_BACKEND, "malformed").inc()
        raise UpstreamBadResponse(f"upstream body is not a chat completion: missing {exc}") from None


def _merge(lines: list[bytes]) -> tuple[StreamEvent | None, bool, GuardError | None]:
    """The SSE `data:` lines of one read as one event (pieces of the same choice joined); also whether
    `[DONE]` came, and a bad chunk's error (what came before it is still delivered)."""
    event: StreamEvent | None = None
    by_index: dict[int, Delta] = {}
    done, error = False, None
    for raw in lines:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        try:
            deltas, usage, envelope = _chunk(payload)
        except GuardError as exc:
            error = exc
            break
        if event is None:
            event = StreamEvent(envelope=envelope)
        event.usage = usage or event.usage
        for d in deltas:
            into = by_index.get(d.index)
            if into is None:
                by_index[d.index] = d
                event.deltas.append(d)
            else:
                _join(into, d)
    return event, done, error


def _join(into: Delta, d: Delta) -> None:
    into.text += d.text
    into.refusal += d.refusal
    into.tool_calls += d.tool_calls
    into.function_call += d.function_call
    if d.logprobs:
        into.logprobs = (into.logprobs or []) + d.logprobs
    into.finish_reason = d.finish_reason or into.finish_reason


def _chunk(payload: bytes) -> tuple[list[Delta], Usage | None, dict[str, Any]]:
    try:
        data = pydantic_core.from_json(payload)
        if "error" in data:
            raise UpstreamBadResponse(f"upstream stream error: {data['error']}")
        return wire.chunk_parts(data)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        metrics.UPSTREAM_ERRORS.labels(_BACKEND, "malformed").inc()
        raise UpstreamBadResponse(f"upstream sent an unreadable stream chunk: {exc}") from None
