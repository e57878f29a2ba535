"""The served OpenAPI document, with the request-body schemas of the routes that parse their bodies by hand.

The chat, feedback and review routes read raw bytes (pydantic-core on bytes: cheaper than FastAPI's body
machinery), so FastAPI cannot see their bodies; the schemas are added here from the same models the routes
parse with, so the document cannot drift from what is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.routing import BaseRoute

from guard import wire
from guard.admin.feedback import FeedbackRequest
from guard.admin.review import ReviewRequest

_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/v1/chat/completions", "post"): wire.ChatCompletionRequest,
    ("/v1/feedback", "post"): FeedbackRequest,
    ("/admin/exchanges/{exchange_id}/review", "post"): ReviewRequest,
}


def install(app: FastAPI, documented: Sequence[BaseRoute] = ()) -> None:
    """`documented`: routes served outside FastAPI (plain Starlette routes, which it does not list), described as
    FastAPI routes of the same path, endpoint and methods."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=[*documented, *app.routes])
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for (path, method), model in _BODIES.items():
                operation = doc.get("paths", {}).get(path, {}).get(method)
                if operation is None:
                    continue
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(body.pop("$defs", {}))
                schemas[model.__name__] = body
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
                }
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
