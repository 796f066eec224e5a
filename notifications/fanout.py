"""Process-local fan-out: one layer channel per daphne process, frames encoded once.

A stock Channels group puts every socket's own channel in Redis, so a broadcast to 5,000
sockets is 5,000 layer messages, 5,000 ``json.dumps`` and seconds of daphne's event loop.
Here each process joins each group once, through one channel of its own; an event arrives
once per process, its frame is encoded once, and the local sockets of that group get it in a
loop that yields now and then, so other sockets' traffic is never held up for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from channels.layers import BaseChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

# Sockets served between two yields to the event loop during one fan-out.
YIELD_EVERY = 200
# channels-redis forgets group members after group_expiry (a day by default): the hub re-adds
# its groups this often. A restarted Redis forgets them at once, but it also breaks the hub's
# receive, after which the hub re-adds them straight away.
REFRESH_SECONDS = 600.0
# group_add calls in flight at once during a refresh (a process may serve 10,000 groups).
REFRESH_CONCURRENCY = 200
# Back-off after the layer fails to receive (Redis down), doubling up to the ceiling.
RETRY_MIN_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0


class Member(Protocol):
    """What the hub needs of a socket: take an event, with its frame already encoded."""

    async def deliver(self, event: dict[str, Any], frame: str | None) -> None: ...


FrameEncoder = Callable[[dict[str, Any]], str | None]


class LocalHub:
    """Join groups on behalf of this process's sockets and fan events out to them."""

    def __init__(self, layer: BaseChannelLayer, encode: FrameEncoder) -> None:
        self.layer = layer
        self.encode = encode
        self.channel: str | None = None
        self.members: dict[str, set[Member]] = {}
        self._task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.refreshed = time.monotonic()

    async def join(self, group: str, member: Member) -> None:
        """Add a socket to a group, joining the layer group on the first local member."""
        async with self._lock:
            await self._ensure_running()
            members = self.members.get(group)
            if members is None:
                self.members[group] = members = set()
                assert self.channel is not None  # noqa: S101
                await self.layer.group_add(group, self.channel)
            members.add(member)

    async def leave(self, group: str, member: Member) -> None:
        """Remove a socket; leave the layer group when no local socket needs it."""
        async with self._lock:
            members = self.members.get(group)
            if members is None:
                return
            members.discard(member)
            if not members:
                del self.members[group]
                if self.channel is not None:
                    with contextlib.suppress(Exception):
                        await self.layer.group_discard(group, self.channel)
            if not self.members:
                await self._stop()

    async def refresh(self, force: bool = False, wait: bool = False) -> None:
        """Re-add every group this process serves, in the background (idempotent ZADDs).

        Never inline: re-adding 10,000 groups one after another held up every push for
        seconds when it ran inside the receive loop.
        """
        if not force and time.monotonic() - self.refreshed < REFRESH_SECONDS:
            return
        if self._refreshing is not None and not self._refreshing.done():
            if wait:
                await self._refreshing
            return
        self.refreshed = time.monotonic()
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh_all())
        if wait:
            await self._refreshing

    async def _refresh_all(self) -> None:
        channel = self.channel
        groups = list(self.members)
        if channel is None:
            return
        for start in range(0, len(groups), REFRESH_CONCURRENCY):
            results = await asyncio.gather(
                *(
                    self.layer.group_add(group, channel)
                    for group in groups[start : start + REFRESH_CONCURRENCY]
                ),
                return_exceptions=True,
            )
            failed = [result for result in results if isinstance(result, Exception)]
            if failed:
                logger.warning("Re-adding %d group(s) failed (%r)", len(failed), failed[0])
                return

    async def _ensure_running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self.channel = await self.layer.new_channel()
        self._task = asyncio.get_running_loop().create_task(self._receive_loop())

    async def _stop(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            self._refreshing = None
        task, self._task = self._task, None
        self.channel = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _receive_loop(self) -> None:
        delay = RETRY_MIN_SECONDS
        while True:
            channel = self.channel
            if channel is None:
                return
            try:
                event = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("Fan-out receive failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                # Whatever broke may have taken the group memberships with it.
                with contextlib.suppress(Exception):
                    await self.refresh(force=True)
                continue
            delay = RETRY_MIN_SECONDS
            try:
                await self.fan_out(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Fan-out of a %s event failed", event.get("type"))
            with contextlib.suppress(Exception):
                await self.refresh()

    async def fan_out(self, event: dict[str, Any]) -> int:
        """Hand one event to every local member of its group; return how many got it."""
        members = list(self.members.get(event.get("group", ""), ()))
        if not members:
            return 0
        frame = self.encode(event)
        for index, member in enumerate(members, start=1):
            try:
                await member.deliver(event, frame)
            except Exception:
                logger.exception("Delivering a %s event to a socket failed", event.get("type"))
            if index % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return len(members)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalHub] = weakref.WeakKeyDictionary()


def get_hub(encode: FrameEncoder) -> LocalHub:
    """Return this event loop's hub (one per daphne process, one per test loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = LocalHub(get_channel_layer(), encode)
    return hub


def encode_frame(event: dict[str, Any]) -> str | None:
    """Encode a layer event's socket frame once for all local sockets (None: no frame)."""
    from notifications import events

    if event["type"] == "notify.created":
        frame = events.notification_frame(event["notification"])
    elif event["type"] == "notify.read":
        frame = events.read_frame(event["ids"], event["unread"])
    else:
        return None
    return json.dumps(frame, separators=(",", ":"))
