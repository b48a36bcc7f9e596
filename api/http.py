"""Request parsing and response helpers shared by the handlers."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.errors import BadRequest, UnsupportedMediaType, ValidationFailed, validation_message

ModelT = TypeVar("ModelT", bound=BaseModel)

JSON_TYPES = ("application/json", "application/webhook+json", "text/plain", "")


def parse_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """Validate the query string against ``model`` (repeated keys: the first one wins)."""
    data: dict[str, str] = {}
    for key, value in request.query.items():
        data.setdefault(key, value)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(validation_message(exc)) from exc


async def parse_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """Read (size-limited by the app's ``client_max_size``) and validate a JSON body; an empty
    body is ``{}`` whatever its content type."""
    raw = await request.read()
    if not raw.strip():
        data: Any = {}
    elif request.content_type not in JSON_TYPES and not request.content_type.endswith("+json"):
        raise UnsupportedMediaType("request body must be application/json")
    else:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BadRequest("request body is not valid JSON", code="invalid_json") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(validation_message(exc)) from exc


def json_model(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True).encode("utf-8"),
        status=status,
        content_type="application/json",
    )
