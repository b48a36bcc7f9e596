"""Operations as data: the one table both the router and the OpenAPI 3.1 document are built from.

Each :class:`Operation` names its method, path, handler, query/body models and responses;
``api.app`` registers exactly these routes and :func:`build_document` describes exactly these
operations, so the document cannot drift from the routes. :func:`render_docs` renders a
self-contained HTML page (no CDN scripts: it must work offline).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp.typedefs import Handler
from pydantic import BaseModel

Security = Literal["none", "user", "webhook"]

_REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

_ERROR_TEXT = {
    400: "Malformed request (body is not JSON, bad header)",
    401: "Missing or invalid credentials",
    403: "The caller's role does not allow this",
    404: "No such resource in the caller's space",
    409: "The session's state does not allow this",
    413: "Request body too large",
    415: "A request body that is not JSON",
    422: "The request does not match the schema",
    429: "A transcription limit or quota is reached, or the caller's rate limit of searches or "
    "exports (rate_limited, with Retry-After)",
    503: "A dependency (database, LiveKit config) is not available",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A documented successful response."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    # other JSON shapes the response may have instead of ``model`` (documented as anyOf)
    alternatives: tuple[type[BaseModel], ...] = ()
    # other media types this response may have, each with a JSON schema (e.g. text/csv: string)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    replies: tuple[Reply, ...]
    security: Security = "user"
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    errors: tuple[int, ...] = ()
    # documents X-Space-Id / X-User-Id (admin-key callers acting for a space / user)
    acting_headers: bool = True
    description: str = ""

    def error_statuses(self) -> list[int]:
        statuses = set(self.errors)
        if self.security == "user":
            statuses |= {400, 401, 403, 503}  # 503: the database is unreachable
        if self.security == "webhook":
            statuses |= {401, 503}
        if self.query is not None:
            statuses.add(422)
        if self.body is not None:
            statuses |= {400, 413, 415, 422}
        if "{" in self.path:
            statuses.add(404)
        return sorted(statuses)


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}

    def ref(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> Any:
        schema = model.model_json_schema(by_alias=True, ref_template=_REF, mode=mode)
        for name, definition in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, definition)
        self.schemas.setdefault(model.__name__, schema)
        return {"$ref": _REF.format(model=model.__name__)}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf [X, null]`` -> ``X``: an optional query parameter is simply left out."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            merged = dict(rest[0])
            merged.update({k: v for k, v in schema.items() if k != "anyOf"})
            if merged.get("default", 0) is None:
                del merged["default"]
            return merged
    return schema


def _inline(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Replace local ``$ref``s (enums of query parameters) by their definitions."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        merged = dict(defs[ref.removeprefix("#/$defs/")])
        merged.update({k: v for k, v in schema.items() if k != "$ref"})
        schema = merged
    if isinstance(schema.get("anyOf"), list):
        schema = {**schema, "anyOf": [_inline(option, defs) for option in schema["anyOf"]]}
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    required = set(schema.get("required", []))
    defs = schema.get("$defs", {})
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(_inline(dict(prop), defs))
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


_ACTING_HEADERS = [
    {
        "name": "X-Space-Id",
        "in": "header",
        "required": False,
        "description": "Admin key only: the space the call acts in (ignored for user JWTs).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[!-~]+$"},
    },
    {
        "name": "X-User-Id",
        "in": "header",
        "required": False,
        "description": "Admin key only: the user the call acts for (ignored for user JWTs).",
        "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"},
    },
]


@dataclass(frozen=True, slots=True)
class Callback:
    """A request the API sends (an outbound webhook), documented under ``webhooks``."""

    name: str
    summary: str
    model: type[BaseModel]
    headers: tuple[tuple[str, str], ...] = ()


def build_document(
    operations: Sequence[Operation],
    *,
    title: str,
    version: str,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (and of the ``callbacks`` it sends)."""
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
        }
        if op.description:
            item["description"] = op.description
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _path_schema(name)}
            for name in _path_names(op.path)
        ]
        if op.query is not None:
            parameters += _query_parameters(op.query)
        if op.security == "user" and op.acting_headers:
            parameters += _ACTING_HEADERS
        if parameters:
            item["parameters"] = parameters
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {op.body_media_type: {"schema": components.ref(op.body, "validation")}},
            }
        if op.security == "user":
            item["security"] = [{"bearerAuth": []}, {"adminKey": []}]
        elif op.security == "webhook":
            item["security"] = [{"livekitWebhook": []}]
        else:
            item["security"] = []
        responses: dict[str, Any] = {}
        for reply in op.replies:
            content: dict[str, Any] = {}
            if reply.model is not None:
                schema = components.ref(reply.model, "serialization")
                if reply.alternatives:
                    refs = [components.ref(m, "serialization") for m in reply.alternatives]
                    schema = {"anyOf": [schema, *refs]}
                content["application/json"] = {"schema": schema}
            for media_type, schema in reply.media.items():
                content[media_type] = {"schema": schema}
            response: dict[str, Any] = {"description": reply.description}
            if content:
                response["content"] = content
            if reply.headers:
                response["headers"] = {h: {"schema": {"type": "string"}} for h in reply.headers}
            responses[str(reply.status)] = response
        for status in op.error_statuses():
            responses[str(status)] = {
                "description": _ERROR_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        item["responses"] = responses
        paths.setdefault(op.path, {})[op.method.lower()] = item
    webhooks: dict[str, Any] = {}
    for cb in callbacks:
        webhooks[cb.name] = {
            "post": {
                "operationId": "webhook_" + cb.name.replace(".", "_"),
                "summary": cb.summary,
                "parameters": [
                    {"name": h, "in": "header", "required": True, "description": d,
                     "schema": {"type": "string"}}
                    for h, d in cb.headers
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": components.ref(cb.model, "serialization")}
                    },
                },
                "responses": {"2XX": {"description": "Acknowledged; anything else is retried"}},
            }
        }  # fmt: skip
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Sessions, LiveKit join tokens and webhooks, transcripts and usage/cost. "
                'Every error is `{"error": {"code", "message"}}`.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 JWT with claims sub (user), space, role (member|admin).",
                },
                "adminKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Api-Key",
                    "description": "Service admin key (also accepted as a Bearer credential); "
                    "name the space and user with X-Space-Id / X-User-Id.",
                },
                "livekitWebhook": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "LiveKit's signed webhook token (sha256 of the body).",
                },
            },
        },
    }
    if webhooks:
        document["webhooks"] = webhooks
    return document


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _path_schema(name: str) -> dict[str, Any]:
    if name == "slug":
        return {"type": "string", "minLength": 1, "maxLength": 64}
    return {"type": "string", "minLength": 1}


def render_docs(document: dict[str, Any]) -> str:
    """A self-contained HTML page listing every operation (no external scripts or styles)."""
    esc = html.escape
    rows: list[str] = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            params = ", ".join(
                f"{esc(p['name'])} ({esc(p['in'])}{', required' if p.get('required') else ''})"
                for p in op.get("parameters", [])
            )
            statuses = ", ".join(esc(s) for s in op["responses"])
            auth = (
                "none"
                if not op.get("security")
                else ", ".join(esc(next(iter(s))) for s in op["security"])
            )
            rows.append(
                f"<tr><td class=m>{esc(method.upper())}</td><td><code>{esc(path)}</code></td>"
                f"<td>{esc(op.get('summary', ''))}</td><td>{params}</td><td>{auth}</td>"
                f"<td>{statuses}</td></tr>"
            )
    info = document["info"]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(info['title'])}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
        ".m{font-weight:bold}code{white-space:nowrap}</style></head><body>"
        f"<h1>{esc(info['title'])} <small>{esc(info['version'])}</small></h1>"
        f"<p>{esc(info.get('description', ''))}</p>"
        '<p>Machine-readable document: <a href="/api/openapi.json">/api/openapi.json</a></p>'
        "<table><tr><th>method</th><th>path</th><th>summary</th><th>parameters</th>"
        "<th>auth</th><th>responses</th></tr>" + "".join(rows) + "</table></body></html>"
    )


def document_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, sort_keys=False).encode("utf-8")
