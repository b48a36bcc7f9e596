"""Rooms: who is in them, who receives whose tracks and data, and when they close."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from livekit.protocol import models, rtc

from . import ids
from .data import DataSender, forward_data_packet
from .errors import AuthError
from .participant import Participant, PublishedTrack

logger = logging.getLogger("devserver")

_CLOSE_WAIT_S = 10.0


class EventSink(Protocol):
    """Receives room lifecycle events (the webhook notifier)."""

    def notify(
        self,
        event: str,
        room: models.Room,
        *,
        participant: models.ParticipantInfo | None = None,
        track: models.TrackInfo | None = None,
    ) -> None: ...


class Room:
    """One room. Its methods run on the event loop; state changes happen before any await."""

    def __init__(
        self,
        name: str,
        *,
        manager: RoomManager,
        events: EventSink,
        empty_timeout_s: float,
        departure_timeout_s: float,
        metadata: str = "",
        max_participants: int = 0,
    ) -> None:
        self.name = name
        self.sid = ids.new_sid(ids.ROOM_PREFIX)
        self.metadata = metadata
        self.max_participants = max_participants
        self.empty_timeout_s = empty_timeout_s
        self.departure_timeout_s = departure_timeout_s
        self.created_at_ms = int(time.time() * 1000)
        self.participants: dict[str, Participant] = {}
        self.closed = False
        self._manager = manager
        self._events = events
        self._close_timer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._schedule_close(empty_timeout_s)

    def info(self) -> models.Room:
        present = [p for p in self.participants.values() if p.is_present]
        return models.Room(
            sid=self.sid,
            name=self.name,
            empty_timeout=int(self.empty_timeout_s),
            departure_timeout=int(self.departure_timeout_s),
            max_participants=self.max_participants,
            creation_time=self.created_at_ms // 1000,
            creation_time_ms=self.created_at_ms,
            metadata=self.metadata,
            num_participants=len(present),
            num_publishers=sum(1 for p in present if p.published),
        )

    # -- membership ---------------------------------------------------------------------------

    async def join(
        self, participant: Participant, *, ping_interval_s: int, ping_timeout_s: int
    ) -> None:
        if self.closed:
            raise AuthError(404, "room is closed")
        if (
            self.max_participants
            and participant.identity not in self.participants
            and len(self.participants) >= self.max_participants
        ):
            raise AuthError(403, "room is full")
        previous = self.participants.get(participant.identity)
        if previous is not None:
            await self.remove(previous, models.DUPLICATE_IDENTITY, notify_client=True)
        self.participants[participant.identity] = participant
        participant.state = models.ParticipantInfo.JOINED
        if not participant.is_dependent:
            self._cancel_close()

        response = rtc.SignalResponse()
        join = response.join
        join.room.CopyFrom(self.info())
        join.participant.CopyFrom(participant.info())
        join.other_participants.extend(p.info() for p in self._visible(exclude=participant))
        join.server_version = "1.9.0"
        join.server_info.edition = models.ServerInfo.Standard
        join.server_info.version = "1.9.0"
        join.server_info.protocol = 16
        join.server_info.node_id = "devserver"
        join.server_info.region = "local"
        join.subscriber_primary = participant.transport.subscriber_primary
        join.ping_interval = ping_interval_s
        join.ping_timeout = ping_timeout_s
        join.client_configuration.resume_connection = models.ClientConfigSetting.DISABLED
        participant.send(response)

        self._broadcast_participant(participant)
        if participant.grants.can_subscribe and participant.auto_subscribe:
            for publisher in self._visible(exclude=participant):
                for track in publisher.published.values():
                    if (source := track.source()) is not None:
                        participant.transport.subscribe(source)

    def on_participant_active(self, participant: Participant) -> None:
        if participant.state != models.ParticipantInfo.JOINED:
            return
        participant.state = models.ParticipantInfo.ACTIVE
        participant.touch()
        self._broadcast_participant(participant)
        self._events.notify("participant_joined", self.info(), participant=participant.info())

    async def remove(self, participant: Participant, reason: int, *, notify_client: bool) -> None:
        """Take a participant out of the room (idempotent) and close its connections."""
        if self.participants.get(participant.identity) is not participant:
            return
        del self.participants[participant.identity]
        if notify_client:
            participant.leave(reason)
        was_active = participant.state == models.ParticipantInfo.ACTIVE
        participant.state = models.ParticipantInfo.DISCONNECTED
        participant.disconnect_reason = reason
        for track in list(participant.published.values()):
            self._unpublish(participant, track)
        participant.touch()
        self._broadcast_participant(participant)
        if was_active:
            self._events.notify("participant_left", self.info(), participant=participant.info())
        if not self.closed and not any(not p.is_dependent for p in self.participants.values()):
            self._schedule_close(self.departure_timeout_s)
        closing = participant.close()
        self._manager.track_closing(closing)
        await asyncio.shield(closing)

    def remove_soon(self, participant: Participant, reason: int) -> None:
        """Schedule :meth:`remove` from synchronous code (e.g. a failed peer connection)."""
        task = asyncio.create_task(
            self.remove(participant, reason, notify_client=True),
            name=f"remove:{participant.sid}",
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self, reason: int = models.ROOM_CLOSED) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_close()
        for participant in list(self.participants.values()):
            await self.remove(participant, reason, notify_client=True)
        self._manager.forget(self)
        self._events.notify("room_finished", self.info())
        logger.info("room closed", extra={"room_sid": self.sid})

    # -- tracks -------------------------------------------------------------------------------

    def on_track_published(self, publisher: Participant, track: PublishedTrack) -> None:
        self._broadcast_participant(publisher)
        self._events.notify(
            "track_published", self.info(), participant=publisher.info(), track=track.info
        )
        source = track.source()
        if source is None or publisher.hidden:
            return
        for subscriber in self._visible(exclude=publisher, include_hidden=True):
            if subscriber.grants.can_subscribe and subscriber.auto_subscribe:
                subscriber.transport.subscribe(source)

    def on_track_unpublished(self, publisher: Participant, track: PublishedTrack) -> None:
        self._unpublish(publisher, track)
        self._broadcast_participant(publisher)

    def on_track_forwarding(self, track_sid: str) -> None:
        """A subscriber now receives the track: tell its publisher (``local_track_subscribed``)."""
        for participant in self.participants.values():
            if track_sid in participant.published:
                response = rtc.SignalResponse()
                response.track_subscribed.track_sid = track_sid
                participant.send(response)
                return

    def update_subscription(
        self, subscriber: Participant, track_sids: list[str], subscribe: bool
    ) -> None:
        for sid in track_sids:
            if not subscribe:
                subscriber.transport.unsubscribe(sid)
                continue
            track = self._find_track(sid)
            if track is None or track.publisher is subscriber or track.publisher.hidden:
                continue
            source = track.source()
            if source is not None and subscriber.grants.can_subscribe:
                subscriber.transport.subscribe(source)

    def on_participant_changed(
        self, participant: Participant, *, include_self: bool = False
    ) -> None:
        self._broadcast_participant(participant, include_self=include_self)

    # -- data ---------------------------------------------------------------------------------

    def forward_data(self, sender: Participant, kind: int, raw: bytes) -> None:
        forward = forward_data_packet(
            DataSender(
                sid=sender.sid,
                identity=sender.identity,
                hidden=sender.hidden,
                is_agent=sender.grants.is_agent,
                can_publish_data=sender.grants.can_publish_data,
            ),
            kind,
            raw,
        )
        if forward is None:
            return
        targeted = bool(forward.destination_identities or forward.destination_sids)
        for participant in self.participants.values():
            if participant is sender or not participant.is_present:
                continue
            if targeted and not (
                participant.identity in forward.destination_identities
                or participant.sid in forward.destination_sids
            ):
                continue
            participant.transport.send_data(kind, forward.payload)

    # -- helpers ------------------------------------------------------------------------------

    def _unpublish(self, publisher: Participant, track: PublishedTrack) -> None:
        publisher.published.pop(track.sid, None)
        for participant in self.participants.values():
            participant.transport.unsubscribe(track.sid)
        if track.fanout is not None:
            track.fanout.clear()
        self._events.notify(
            "track_unpublished", self.info(), participant=publisher.info(), track=track.info
        )

    def _find_track(self, track_sid: str) -> PublishedTrack | None:
        for participant in self.participants.values():
            if (track := participant.published.get(track_sid)) is not None:
                return track
        return None

    def _visible(
        self, *, exclude: Participant, include_hidden: bool = False
    ) -> Iterable[Participant]:
        return [
            p
            for p in self.participants.values()
            if p is not exclude and p.is_present and (include_hidden or not p.hidden)
        ]

    def _broadcast_participant(
        self, participant: Participant, *, include_self: bool = False
    ) -> None:
        """Send the participant's info to the others (never for hidden ones) and maybe itself."""
        response = rtc.SignalResponse()
        response.update.participants.append(participant.info())
        for other in self.participants.values():
            if not other.is_present:
                continue
            if other is participant:
                if include_self:
                    other.send(response)
            elif not participant.hidden:
                other.send(response)

    def _schedule_close(self, delay_s: float) -> None:
        self._cancel_close()
        self._close_timer = asyncio.create_task(
            self._close_after(delay_s), name=f"room-timeout:{self.sid}"
        )

    def _cancel_close(self) -> None:
        if self._close_timer is not None and self._close_timer is not asyncio.current_task():
            self._close_timer.cancel()
        self._close_timer = None

    async def _close_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not any(not p.is_dependent for p in self.participants.values()):
            self._close_timer = None
            await self.close(models.ROOM_CLOSED)


class RoomManager:
    """All rooms of the server; rooms are isolated from each other."""

    def __init__(
        self,
        *,
        events: EventSink,
        empty_timeout_s: float,
        departure_timeout_s: float,
        auto_create: bool,
    ) -> None:
        self._rooms: dict[str, Room] = {}
        self._events = events
        self._empty_timeout_s = empty_timeout_s
        self._departure_timeout_s = departure_timeout_s
        self._auto_create = auto_create
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def rooms(self) -> list[Room]:
        return list(self._rooms.values())

    def room_for_join(self, name: str) -> Room:
        room = self._rooms.get(name)
        if room is not None:
            return room
        if not self._auto_create:
            raise AuthError(
                404, f"requested room does not exist: {name!r} (create it with CreateRoom)"
            )
        return self.create(name)

    def create(
        self,
        name: str,
        *,
        empty_timeout_s: float | None = None,
        departure_timeout_s: float | None = None,
        metadata: str = "",
        max_participants: int = 0,
    ) -> Room:
        room = self._rooms.get(name)
        if room is not None:
            return room
        room = Room(
            name,
            manager=self,
            events=self._events,
            empty_timeout_s=self._empty_timeout_s if empty_timeout_s is None else empty_timeout_s,
            departure_timeout_s=(
                self._departure_timeout_s if departure_timeout_s is None else departure_timeout_s
            ),
            metadata=metadata,
            max_participants=max_participants,
        )
        self._rooms[name] = room
        self._events.notify("room_started", room.info())
        logger.info("room created", extra={"room_sid": room.sid})
        return room

    def track_closing(self, task: asyncio.Task[None]) -> None:
        """Remember a participant that is still closing, so shutdown can wait for it."""
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def forget(self, room: Room) -> None:
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]

    async def close_all(self, reason: int) -> None:
        for room in list(self._rooms.values()):
            try:
                await room.close(reason)
            except Exception:
                logger.exception("closing a room failed", extra={"room_sid": room.sid})
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=_CLOSE_WAIT_S)
