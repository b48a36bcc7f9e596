"""GET/PUT /api/retention: the space's transcript retention, admins only."""

from __future__ import annotations

from tests.integration.api.conftest import Client
from tests.integration.api.support import admin, error_of, user


async def test_admins_set_and_read_the_policy(client: Client) -> None:
    response = await client.get("/api/retention", headers=user("ann", "space-a", "admin"))
    assert await response.json() == {
        "space_id": "space-a",
        "transcript_days": None,
        "recording_days": None,
    }

    response = await client.put(
        "/api/retention", json={"transcript_days": 30}, headers=user("ann", "space-a", "admin")
    )
    assert response.status == 200
    assert await response.json() == {
        "space_id": "space-a",
        "transcript_days": 30,
        "recording_days": None,
    }
    # per space: space-b is untouched; the admin key acts for the space it names
    response = await client.get("/api/retention", headers=admin("space-b"))
    assert (await response.json())["transcript_days"] is None
    response = await client.get("/api/retention", headers=admin("space-a"))
    assert (await response.json())["transcript_days"] == 30

    response = await client.put(
        "/api/retention", json={"transcript_days": None}, headers=admin("space-a")
    )
    assert (await response.json())["transcript_days"] is None

    # track recordings: kept that many days; a PUT without it goes back to "until the pass"
    response = await client.put(
        "/api/retention",
        json={"transcript_days": None, "recording_days": 7},
        headers=admin("space-a"),
    )
    assert (await response.json())["recording_days"] == 7
    response = await client.get("/api/retention", headers=admin("space-a"))
    assert await response.json() == {
        "space_id": "space-a",
        "transcript_days": None,
        "recording_days": 7,
    }
    response = await client.put(
        "/api/retention", json={"transcript_days": 30}, headers=admin("space-a")
    )
    assert (await response.json())["recording_days"] is None
    response = await client.get("/api/retention", headers=admin("space-a"))
    assert (await response.json())["recording_days"] is None


async def test_members_may_not_read_or_set_it(client: Client) -> None:
    response = await client.get("/api/retention", headers=user("bob", "space-a"))
    assert await error_of(response) == (403, "forbidden")
    response = await client.put(
        "/api/retention", json={"transcript_days": 1}, headers=user("bob", "space-a")
    )
    assert await error_of(response) == (403, "forbidden")


async def test_invalid_policies_are_422(client: Client) -> None:
    for body in (
        {"transcript_days": 0},
        {"transcript_days": 36_501},
        {},
        {"days": 3},
        {"transcript_days": 1, "recording_days": 0},
    ):
        response = await client.put("/api/retention", json=body, headers=admin("space-a"))
        assert await error_of(response) == (422, "validation_error"), body
