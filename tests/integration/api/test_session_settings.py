"""A session's speech settings: set at creation, changed with PATCH, validated (400), scoped."""

from __future__ import annotations

from typing import Any

from tests.integration.api.conftest import Client, MakeClient
from tests.integration.api.support import admin, error_of, user


async def _create(client: Client, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/sessions", json=body, headers=user("alice"))
    assert response.status == 201, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def test_created_with_speech_settings_and_read_back(client: Client) -> None:
    data = await _create(
        client,
        title="Планёрка",
        language="ru",
        hotwords="Kubernetes, Grafana",
        initial_prompt="Планёрка команды платформы.",
        model="base",
        diarization="auto",
    )
    expected = {
        "language": "ru",
        "hotwords": "Kubernetes, Grafana",
        "initial_prompt": "Планёрка команды платформы.",
        "model": "base",
        "diarization": "auto",
    }
    assert {k: data[k] for k in expected} == expected
    read = await (await client.get(f"/api/sessions/{data['slug']}", headers=user("bob"))).json()
    assert {k: read[k] for k in expected} == expected
    plain = await _create(client)
    assert (plain["language"], plain["hotwords"], plain["initial_prompt"]) == (None, None, None)
    assert (plain["model"], plain["diarization"]) == (None, "off")
    auto = await _create(client, language="auto")
    assert auto["language"] is None


async def test_patch_changes_only_the_fields_given(client: Client) -> None:
    slug = (await _create(client, title="t", language="ru", hotwords="Grafana"))["slug"]
    response = await client.patch(
        f"/api/sessions/{slug}",
        json={"initial_prompt": "Обсуждение релиза.", "model": "base", "diarization": "on"},
        headers=user("alice"),
    )
    assert response.status == 200, await response.text()
    data = await response.json()
    assert (data["title"], data["language"], data["hotwords"]) == ("t", "ru", "Grafana")
    assert (data["initial_prompt"], data["model"], data["diarization"]) == (
        "Обсуждение релиза.",
        "base",
        "on",
    )
    # null resets a speech setting to the worker's default
    response = await client.patch(
        f"/api/sessions/{slug}",
        json={"language": None, "hotwords": None, "model": None, "title": "new"},
        headers=user("alice"),
    )
    data = await response.json()
    assert (data["title"], data["language"], data["hotwords"], data["model"]) == (
        "new",
        None,
        None,
        None,
    )
    assert data["initial_prompt"] == "Обсуждение релиза."
    stored = await (await client.get(f"/api/sessions/{slug}", headers=user("alice"))).json()
    assert stored == data


async def test_bad_language_and_unknown_model_are_400(make_client: MakeClient) -> None:
    client = await make_client(asr_models="base")
    for body, code in (
        ({"language": "xx"}, "unsupported_language"),
        ({"language": "qq-RU"}, "unsupported_language"),
        ({"model": "large-v3"}, "unknown_model"),
        ({"model": "tiny.en"}, "unknown_model"),  # installed, but not in this ASR_MODELS
    ):
        response = await client.post("/api/sessions", json=body, headers=user("alice"))
        assert await error_of(response) == (400, code), body
    slug = (await _create(client, language="ru"))["slug"]
    for body, code in (
        ({"language": "xx"}, "unsupported_language"),
        ({"model": "medium"}, "unknown_model"),
    ):
        response = await client.patch(f"/api/sessions/{slug}", json=body, headers=user("alice"))
        assert await error_of(response) == (400, code), body
    unchanged = await (await client.get(f"/api/sessions/{slug}", headers=user("alice"))).json()
    assert (unchanged["language"], unchanged["model"]) == ("ru", None)


async def test_english_only_model_refuses_another_language(client: Client) -> None:
    response = await client.post(
        "/api/sessions", json={"model": "tiny.en", "language": "ru"}, headers=user("alice")
    )
    assert await error_of(response) == (400, "unsupported_language")
    slug = (await _create(client, language="ru"))["slug"]
    response = await client.patch(
        f"/api/sessions/{slug}", json={"model": "tiny.en"}, headers=user("alice")
    )
    assert await error_of(response) == (400, "unsupported_language")
    response = await client.patch(
        f"/api/sessions/{slug}", json={"model": "tiny.en", "language": "en"}, headers=user("alice")
    )
    assert response.status == 200


async def test_malformed_fields_are_422(client: Client) -> None:
    slug = (await _create(client))["slug"]
    for body in (
        {"diarization": "sometimes"},
        {"hotwords": "x" * 501},
        {"language": "english-please"},
        {"speed": 2},
    ):
        response = await client.patch(f"/api/sessions/{slug}", json=body, headers=user("alice"))
        assert await error_of(response) == (422, "validation_error"), body


async def test_patch_is_for_the_creator_or_an_admin_of_the_space(client: Client) -> None:
    slug = (await _create(client))["slug"]
    path = f"/api/sessions/{slug}"
    response = await client.patch(path, json={"language": "de"}, headers=user("bob"))
    assert await error_of(response) == (403, "forbidden")
    response = await client.patch(
        path, json={"language": "de"}, headers=user("mallory", "space-b", "admin")
    )
    assert await error_of(response) == (404, "not_found")
    response = await client.patch(path, json={"language": "de"}, headers=admin("space-b"))
    assert await error_of(response) == (404, "not_found")
    response = await client.patch(
        path, json={"language": "de"}, headers=user("eve", "space-a", "admin")
    )
    assert response.status == 200 and (await response.json())["language"] == "de"


async def test_openapi_documents_the_speech_settings(client: Client) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    patch = doc["paths"]["/api/sessions/{slug}"]["patch"]
    assert patch["operationId"] == "updateSession" and "400" in patch["responses"]
    schemas = doc["components"]["schemas"]
    for name in ("SessionCreate", "SessionUpdate", "SessionOut"):
        assert {"language", "hotwords", "initial_prompt", "model", "diarization"} <= set(
            schemas[name]["properties"]
        ), name
