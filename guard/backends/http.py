"""Any OpenAI-compatible chat API as the model, over a pooled aiohttp client.

aiohttp rather than httpx: in `bench/proxy_overhead.py` the same proxy reached several times the
throughput with aiohttp as its upstream client (figures in the README).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import aiohttp
import pydantic_core

from guard import metrics, wire
from guard.domain import Delta, Message, ModelReply, StreamEvent
from guard.errors import (
    GuardError,
    InvalidRequest,
    UpstreamBadResponse,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from guard.wire import ChatCompletionRequest, Usage

_BACKEND = "upstream"


log = logging.getLogger("guard.upstream")

# What clients need from an upstream error besides its body: when to retry and which request it was.
_PASSED_HEADERS = ("retry-after", "retry-after-ms", "x-request-id")
_PASSED_PREFIXES = ("x-ratelimit-",)
_RETRIED_STATUSES = (429, 503)
CHAT_PATH = "/chat/completions"
ChunkParser = Callable[[object, dict[int, Delta]], Usage | None]  # a chunk added to the deltas by index


class HttpUpstream:
    name = _BACKEND

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        retries: int = 2,
        max_connections: int = 256,
        status_retries: int = 0,
        status_retry_max_wait_s: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.status_retries = status_retries  # retries on 429/503 that honour retry-after; 0 = off
        self.status_retry_max_wait_s = status_retry_max_wait_s
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
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, headers=self._headers, auto_decompress=True
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpUpstream.start() was not awaited")
        return self._session

    def _body(self, request: ChatCompletionRequest | None, messages: list[Message] | None, stream: bool) -> bytes:
        if request is None:
            raise InvalidRequest("an upstream model needs the client's request")
        if messages is None and request.raw is not None:
            return request.raw  # unchanged request: forward the client's bytes as they came
        body = (
            request.upstream_body()
            if messages is None
            else request.upstream_body(messages=wire.messages_to_wire(messages))
        )
        body["stream"] = stream
        return json.dumps(body).encode()

    async def _post(self, body: bytes, path: str = "/chat/completions") -> aiohttp.ClientResponse:
        """POST with retries on connection failures only (the request never reached the upstream) and, when
        configured, on 429/503 after the upstream's own `retry-after`."""
        url = self.base_url + path
        attempt = waited = 0
        while True:
            try:
                resp = await self.session.post(url, data=body)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Connection refused or not accepted in time: the request never left, so retrying is safe.
                if attempt < self.retries:
                    await asyncio.sleep(0.05 * 2**attempt)
                    attempt += 1
                    continue
                metrics.UPSTREAM_ERRORS.labels(_BACKEND, "connect").inc()
                reason = (
                    "connection timed out"
                    if isinstance(exc, TimeoutError)
                    else "connection refused"
                    if isinstance(getattr(exc, "os_error", None), ConnectionRefusedError)
                    else "connection failed"
                )
                log.warning("upstream %s unreachable: %s", self.base_url, exc)
                raise UpstreamUnavailable(f"upstream unreachable: {reason}") from None
            except (TimeoutError, aiohttp.ServerTimeoutError):
                metrics.UPSTREAM_ERRORS.labels(_BACKEND, "timeout").inc()
                log.warning("upstream %s did not answer in time", self.base_url)
                raise UpstreamTimeout("upstream did not answer in time") from None
            except aiohttp.ClientError as exc:
                metrics.UPSTREAM_ERRORS.labels(_BACKEND, "connect").inc()
                log.warning("upstream %s failed: %s", self.base_url, exc)
                raise UpstreamUnavailable("upstream connection failed") from None
            if resp.status < 400:
                return resp
            wait = _retry_after(resp) if resp.status in _RETRIED_STATUSES and waited < self.status_retries else None
            if wait is None or wait > self.status_retry_max_wait_s:
                await self._raise_for_status(resp)
            resp.release()
            waited += 1
            metrics.UPSTREAM_ERRORS.labels(_BACKEND, f"retried_{resp.status}").inc()
            await asyncio.sleep(wait)

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> NoReturn:
        try:
            raw = await resp.read()
        finally:
            resp.release()
        metrics.UPSTREAM_ERRORS.labels(_BACKEND, f"http_{resp.status // 100}xx").inc()
        if resp.status in (401, 403):  # the proxy's own upstream credentials: not the client's key at fault
            log.error("upstream %s refused the proxy's credentials (%s): %s", self.base_url, resp.status, raw[:300])
            raise UpstreamBadResponse(f"upstream refused the proxy's credentials (HTTP {resp.status})")
        headers = {
            k: v
            for k, v in resp.headers.items()
            if k.lower() in _PASSED_HEADERS or k.lower().startswith(_PASSED_PREFIXES)
        }
        message = _error_message(raw)
        if message is None:  # not an OpenAI error body (a proxy's HTML page...): give it the OpenAI shape
            message = f"upstream returned HTTP {resp.status}: {raw[:300].decode(errors='replace')}"
            raw = pydantic_core.to_json(
                {
                    "error": {
                        "message": message,
                        "type": "upstream_error",
                        "param": None,
                        "code": f"upstream_http_{resp.status}",
                    }
                }
            )
        raise UpstreamHTTPError(resp.status, raw, headers, message)

    async def complete(self, request: ChatCompletionRequest | None, messages: list[Message] | None) -> ModelReply:
        return parse_reply(*await self.read(CHAT_PATH, self._body(request, messages, stream=False)))

    def stream(
        self, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> AsyncIterator[StreamEvent]:
        return self.stream_from(CHAT_PATH, self._body(request, messages, stream=True))

    async def read(self, path: str, body: bytes) -> tuple[object, bytes]:
        """POST `body` to `path`; the answer parsed and as its bytes."""
        resp = await self._post(body, path)
        try:
            raw = await resp.read()
            data = pydantic_core.from_json(raw)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            metrics.UPSTREAM_ERRORS.labels(_BACKEND, "timeout").inc()
            raise UpstreamTimeout("upstream stopped answering") from None
        except (ValueError, aiohttp.ClientError) as exc:
            metrics.UPSTREAM_ERRORS.labels(_BACKEND, "malformed").inc()
            raise UpstreamBadResponse(f"upstream sent an unreadable body: {exc}") from None
        finally:
            resp.release()
        return data, raw

    async def stream_from(
        self, path: str, body: bytes, parse: ChunkParser = wire.chunk_parts
    ) -> AsyncIterator[StreamEvent]:
        """One event per network read: chunks that arrived together are merged, so a proxy that falls
        behind does less work per token instead of more (a token-paced upstream still gives one each)."""
        resp = await self._post(body, path)
        tail = unsent = b""  # unsent: complete lines read but not yet handed on with an event (`raw`)
        done = framed = False  # framed: at least one SSE `data:` line came
        try:
            async for data in _reads(resp):
                if done:
                    continue  # after [DONE], read to the end: a fully read response returns to the pool
                lines = (tail + data).split(b"\n")
                tail = lines.pop()
                event, done, error, used = _merge(lines, parse, first=not framed)
                framed = framed or done or event is not None or error is not None
                if used:
                    unsent += b"\n".join(lines[:used]) + b"\n"
                # The bytes go with an event, or alone when the stream ends here: a blank line that closes the
                # last frame must reach a client that is relayed the bytes, or that frame runs into the next.
                if unsent and (event is not None or done or error is not None):
                    event = event or StreamEvent()
                    event.raw, unsent = unsent, b""
                if event is not None:
                    yield event
                if error is not None:
                    raise error
            if not done:
                if unsent and framed:  # the last frame's closing newline: a relayed error event must not join it
                    yield StreamEvent(raw=unsent)
                raise _unfinished(resp, framed)
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

    async def list_models(self) -> list[wire.Envelope]:
        try:
            async with self.session.get(f"{self.base_url}/models") as resp:
                if resp.status >= 400:
                    return []
                return list((await resp.json(content_type=None)).get("data", []))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return []


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    """Seconds the upstream asks to wait (`retry-after-ms` or `retry-after` in seconds), None when it did not say."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = resp.headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None  # an HTTP date: not worth parsing for a bounded retry
    return None


def _error_message(raw: bytes) -> str | None:
    """The message of an OpenAI error body, None when the body is not one."""
    try:
        error = pydantic_core.from_json(raw)["error"]
        return str(error["message"]) if isinstance(error, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def parse_reply(
    data: object, raw: bytes, parse: Callable[[object, bytes], ModelReply] = wire.reply_from_body
) -> ModelReply:
    try:
        return parse(data, raw)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        metrics.UPSTREAM_ERRORS.labels(_BACKEND, "malformed").inc()
        raise UpstreamBadResponse(f"upstream body is not a chat completion: missing {exc}") from None


def _merge(
    lines: list[bytes], parse: ChunkParser, *, first: bool = False
) -> tuple[StreamEvent | None, bool, GuardError | None, int]:
    """The SSE `data:` lines of one read as one event (pieces of the same choice joined; with the envelope of
    its first chunk when `first`); also whether `[DONE]` came, a bad chunk's error (what came before it is
    still delivered), and how many lines came before either (the lines the event stands for)."""
    event: StreamEvent | None = None
    by_index: dict[int, Delta] = {}
    done, error = False, None
    used = len(lines)
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done, used = True, i
            break
        try:
            usage, data = _chunk(payload, parse, by_index)
        except GuardError as exc:
            error, used = exc, i
            break
        if event is None:
            event = StreamEvent(envelope=wire.envelope(data) if first else None)
        if usage is not None:
            event.usage = usage
    if event is not None:
        event.deltas = list(by_index.values())
    return event, done, error, used


def _chunk(payload: bytes, parse: ChunkParser, into: dict[int, Delta]) -> tuple[Usage | None, dict[str, Any]]:
    """A chunk added to `into`: its usage, and the chunk itself (parsed)."""
    try:
        data = pydantic_core.from_json(payload)
        error = data.get("error") if isinstance(data, dict) else None
        if error is None:
            return parse(data, into), data
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        metrics.UPSTREAM_ERRORS.labels(_BACKEND, "malformed").inc()
        raise UpstreamBadResponse(f"upstream sent an unreadable stream chunk: {exc}") from None
    # An error event (`data: {"error": {...}}`): the upstream gave up mid-answer. Its text is logged, not shown.
    metrics.UPSTREAM_ERRORS.labels(_BACKEND, "stream_error").inc()
    message = error.get("message") if isinstance(error, dict) else error
    raise UpstreamBadResponse(f"upstream sent an error event in the stream: {message}", code="upstream_stream_error")


async def _reads(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body as it arrives, then a newline: a last line sent without one is still read."""
    async for data in resp.content.iter_any():
        yield data
    yield b"\n"


def _unfinished(resp: aiohttp.ClientResponse, framed: bool) -> UpstreamBadResponse:
    """The error for a stream body that ended without `data: [DONE]`: an answer cut off (some events came) or a
    body that is not server-sent events at all (an HTML error page, a whole JSON completion)."""
    if framed:
        metrics.UPSTREAM_ERRORS.labels(_BACKEND, "stream_incomplete").inc()
        return UpstreamBadResponse("upstream stream ended without [DONE]", code="upstream_stream_incomplete")
    metrics.UPSTREAM_ERRORS.labels(_BACKEND, "not_sse").inc()
    # Its content type is logged, not its body: that may be an answer, with the prompt's text in it.
    return UpstreamBadResponse(
        "upstream answered a stream request with a body that is not server-sent events: "
        f"content-type {resp.headers.get('content-type', '-')!r}"
    )
