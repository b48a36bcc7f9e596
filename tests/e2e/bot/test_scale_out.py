"""Scale-out on the real engine: two official LiveKit nodes sharing a Redis, two bot workers.

The participants connect to node A, which hosts the room (a region-aware node selector keeps a
room on the node it was first asked for); both workers connect through node B, whose signalling
is relayed to node A over Redis. One worker is killed (SIGKILL) mid-meeting: the other takes the
job over and captions go on, with every final the room saw stored exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import livekit.api as lkapi
import pytest

from lkserver import OfficialServerProcess, free_port
from store.stores import Store
from tests.e2e.bot.conftest import worker_env_for
from tests.e2e.bot.helpers import CaptionListener, WorkerProcess
from tests.e2e.bot.test_bot import (
    join_speaker,
    kill_first_while_alice_speaks,
    new_session,
    wait_job,
)
from tests.support.livekit import API_KEY, API_SECRET, official_config, start_official
from tests.support.netns import VethNamespace
from tests.support.redis import RedisProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REGIONS = [{"name": "a", "lat": 0.0, "lon": 0.0}, {"name": "b", "lat": 40.0, "lon": 40.0}]


@pytest.fixture
def two_nodes(
    bot_netns: VethNamespace,
) -> Iterator[tuple[OfficialServerProcess, OfficialServerProcess]]:
    redis = RedisProcess(
        bot_netns.namespace_address, free_port(), command_prefix=bot_netns.command([])
    )
    nodes: list[OfficialServerProcess] = []
    try:
        for index, region in enumerate(("a", "b")):
            config = official_config(
                bot_netns,
                node=2 + index,
                redis_address=redis.address,
                departure_timeout_s=2,
                extra={
                    "region": region,
                    "node_selector": {"kind": "regionaware", "regions": REGIONS},
                },
            )
            nodes.append(start_official(bot_netns, config, name=f"node-{region}"))
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.cleanup()
        redis.close()


async def participants_seen_by(node: OfficialServerProcess, room: str) -> set[str]:
    async with lkapi.LiveKitAPI(node.http_url, API_KEY, API_SECRET) as client:
        reply = await client.room.list_participants(lkapi.ListParticipantsRequest(room=room))
    return {p.identity for p in reply.participants}


async def test_two_nodes_two_workers_one_killed_the_other_takes_over(
    two_nodes: tuple[OfficialServerProcess, OfficialServerProcess],
    repo: Store,
    database_url: str,
    tmp_path: Path,
) -> None:
    node_a, node_b = two_nodes
    listener = CaptionListener()
    workers: list[WorkerProcess] = []
    try:
        # People join first, through node A (as when their joins request the job) ...
        session = await new_session(repo)
        await listener.join(node_a.url, session.slug)
        alice = await join_speaker(node_a.url, session.slug, "alice")
        # ... and the workers go through node B.
        env = worker_env_for(node_b.url, database_url, tmp_path)
        first = WorkerProcess("w1", env, tmp_path)
        workers.append(first)
        await first.wait_ready()
        await wait_job(repo, session.id, lambda j: j.worker_id == "w1")
        second = WorkerProcess("w2", env, tmp_path)
        workers.append(second)
        await second.wait_ready()

        # One room across the nodes: node B sees the participants who joined through node A.
        assert {"alice", "carol"} <= await participants_seen_by(node_b, session.slug)
        await kill_first_while_alice_speaks(repo, session, first, listener, alice)

        # The room lived on node A (the RTC node logs who became active in its rooms): the
        # workers' signalling went to node B and was relayed there.
        def active(node: OfficialServerProcess) -> set[str]:
            lines = node.log_tail(100_000).splitlines()
            return {who for who in ("alice", "transcriber") for line in lines
                    if "participant active" in line and f'"{who}"' in line}  # fmt: skip

        assert active(node_a) == {"alice", "transcriber"}, node_a.log_tail(50)
        assert active(node_b) == set(), node_b.log_tail(50)
    finally:
        await listener.leave()
        for worker in workers:
            worker.stop()
