"""Domain errors. Raised anywhere, mapped to OpenAI-shaped HTTP errors once, in `guard.app` (a stream's error
event, sent after the headers, says the same `public_message`)."""

from __future__ import annotations

import logging
import re

log = logging.getLogger("guard")


class GuardError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(GuardError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class BodyTooLarge(GuardError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class Unauthorized(GuardError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GuardError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(GuardError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class UnknownProfile(InvalidRequest):
    code = "unknown_profile"


class RateLimited(GuardError):
    """A rate limit or quota is used up. `type` is what OpenAI sends: "requests" or "tokens"."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, kind: str, retry_after: int) -> None:
        super().__init__(message)
        self.type = kind
        self.retry_after = retry_after


class UpstreamUnavailable(GuardError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeout(GuardError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class UpstreamBadResponse(GuardError):
    """The upstream answered, but with an error status or a body we cannot read."""

    status = 502
    type = "upstream_error"
    code = "upstream_bad_response"


class UpstreamHTTPError(GuardError):
    """The upstream answered with an error status. The client gets that status, the upstream's OpenAI error body
    as it was sent, and the headers clients back off with (`retry-after`, `x-ratelimit-*`, `x-request-id`)."""

    type = "upstream_error"

    def __init__(self, status: int, body: bytes, headers: dict[str, str], message: str) -> None:
        super().__init__(message, code=f"upstream_http_{status}")
        self.status = status
        self.body = body
        self.headers = headers


class NotImplementedYet(GuardError):
    """An endpoint or feature this proxy does not offer (in this configuration); the message names what."""

    status = 501
    type = "invalid_request_error"
    code = "not_implemented"


class RailError(GuardError):
    """A rail failed while fail-closed: the request is refused rather than let through unchecked."""

    status = 503
    type = "server_error"
    code = "rail_error"


class ClientDisconnected(GuardError):
    """The client hung up before its answer was ready; the work for it was cancelled. Nobody reads the 499."""

    status = 499
    type = "client_error"
    code = "client_disconnected"


class NotReady(GuardError):
    status = 503
    type = "server_error"
    code = "not_ready"


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+", re.I)


def public_message(exc: GuardError, exchange_id: str | None) -> str:
    """What the client may read of an error (a response body or a stream's error event). Upstream errors lose
    the upstream's address and, for an answer the upstream got wrong, its own text (which may quote internals);
    both go to the log instead."""
    if exc.type != "upstream_error":
        return exc.message
    log.warning("upstream error (exchange %s): %s", exchange_id or "-", exc.message[:300])
    # The first clause is the proxy's own words; what follows quotes the upstream or the network library
    # (addresses, the upstream's error body).
    message = " ".join(_URL.sub("", exc.message).split()).split(": ", 1)[0]
    if exc.code == "upstream_unreachable" and "timed out" in exc.message.lower():
        message += ": connection timed out"
    return message
