"""Process-local fan-out: one layer channel per daphne process, frames encoded once.

A stock Channels group puts every socket's own channel in Redis, so a broadcast to 5,000
sockets is 5,000 layer messages, 5,000 ``json.dumps`` and seconds of daphne's event loop.
Here each process joins each group once, through one channel of its own; an event arrives
once per process, its frame is encoded once, and the local sockets of that group get it in a
loop that yields now and then, so other sockets' traffic is never held up for long.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from channels.layers import BaseChannelLayer, get_channel_layer

from notifications import layer_receive
from notifications.deadlines import HANDSHAKE_JOIN_SECONDS, HUB_RECEIVE_SECONDS, HUB_WRITE_SECONDS

logger = logging.getLogger(__name__)

# Sockets served between two yields to the event loop during one fan-out.
YIELD_EVERY = 50
# Events of one drained batch fanned out between two yields (each may reach one socket only).
YIELD_EVERY_EVENTS = 10
# channels-redis forgets group members after group_expiry (a day by default): the hub re-adds
# its groups this often. A restarted Redis forgets them at once, but it also breaks the hub's
# receive, after which the hub re-adds them straight away.
REFRESH_SECONDS = 600.0
# group_add calls in flight at once during a refresh (a process may serve 10,000 groups).
REFRESH_CONCURRENCY = 200
# Back-off after the layer fails to receive or a membership write fails (Redis down or
# silent), doubling up to the ceiling: a returning Redis is written to within 5 s.
RETRY_MIN_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
# Pushes remembered per process to drop one the layer hands over twice: minutes of a busy
# site's pushes, ~1 MB.
RECENT_SENDS = 10_000


class Member(Protocol):
    """What the hub needs of a socket: take an event, with its frame already encoded."""

    async def deliver(self, event: dict[str, Any], frame: str | None) -> None: ...


FrameEncoder = Callable[[dict[str, Any]], str | None]


class LocalHub:
    """Join groups on behalf of this process's sockets and fan events out to them.

    Every call to Redis here has a deadline (notifications.deadlines): a Redis that stops
    answering fails a membership write, it does not hang the handshakes waiting for it. A
    group whose write failed keeps its local members and is written again, with back-off,
    until Redis answers: then the pushes to it reach them again.
    """

    def __init__(self, layer: BaseChannelLayer, encode: FrameEncoder) -> None:
        self.layer = layer
        self.encode = encode
        # channels-redis: messages queued behind the first are taken in batches.
        self._drains = layer_receive.supports_drain(layer)
        self._drain: layer_receive.QueueDrain | None = None
        # The last pushes fanned out, by their send (a message the layer hands over again
        # comes within seconds of the first).
        self._recent_sends: collections.deque[int] = collections.deque(maxlen=RECENT_SENDS)
        self._sends: set[int] = set()
        self.channel: str | None = None
        self.members: dict[str, set[Member]] = {}
        self._task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.refreshed = time.monotonic()
        # Membership writes waiting for the next flush, and those being written.
        self._adds: dict[str, asyncio.Future[None]] = {}
        self._discards: set[str] = set()
        self._writing: dict[str, asyncio.Future[None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        # Writes that failed (Redis down or silent), waiting for the next retry; while any
        # wait, new groups join them instead of making each handshake wait for a deadline.
        self.retry_adds: set[str] = set()
        self.retry_discards: set[str] = set()
        self._retrier: asyncio.Task[None] | None = None
        self._retry_delay = RETRY_MIN_SECONDS

    @property
    def failing(self) -> bool:
        """Whether some membership write failed and waits to be retried."""
        return bool(self.retry_adds or self.retry_discards)

    async def join(self, group: str, member: Member) -> bool:
        """Add a socket to a group, joining the layer group on the first local member."""
        return await self.join_many([group], member)

    async def join_many(self, groups: Iterable[str], member: Member) -> bool:
        """Add a socket to groups; return whether this process is in each of them in Redis.

        Groups new to the process are queued and written together with every other
        socket's, one pipeline per flush: a burst of handshakes costs a few Redis round
        trips, not two per group per socket (a millisecond of daphne's CPU per handshake).

        The socket is a member locally at once, written or not. False means some group is
        not written yet (Redis failed, or gave no answer within HANDSHAKE_JOIN_SECONDS):
        the hub goes on writing it, and until then the socket misses that group's pushes,
        which its ping-and-sync recovers from the database.
        """
        waits: list[asyncio.Future[None]] = []
        unwritten = False
        async with self._lock:
            await self._ensure_running()
            for group in dict.fromkeys(groups):
                members = self.members.get(group)
                if members is None:
                    self.members[group] = members = set()
                    self.retry_discards.discard(group)
                    if group in self._discards:  # still in Redis: keep it there
                        self._discards.discard(group)
                    else:
                        self._queue_add(group)
                pending = self._adds.get(group) or self._writing.get(group)
                if pending is not None:
                    waits.append(pending)
                elif group in self.retry_adds:
                    unwritten = True
                members.add(member)
        if not waits:
            return not unwritten
        # Never cancels the futures other sockets share; a write in flight ends by its own
        # deadline, this wait by the handshake's.
        done, pending_writes = await asyncio.wait(waits, timeout=HANDSHAKE_JOIN_SECONDS)
        failed = any(future.cancelled() or future.exception() is not None for future in done)
        return not (unwritten or failed or pending_writes)

    async def leave(self, group: str, member: Member) -> None:
        """Remove a socket; leave the layer group when no local socket needs it."""
        async with self._lock:
            members = self.members.get(group)
            if members is None:
                return
            members.discard(member)
            if not members:
                del self.members[group]
                queued = self._adds.pop(group, None)
                if queued is not None:  # never written: nothing to undo
                    queued.set_result(None)
                elif group in self.retry_adds:  # never written either
                    self.retry_adds.discard(group)
                elif self.failing:  # Redis is failing: leave it to the retry
                    self.retry_discards.add(group)
                else:
                    self._discards.add(group)
                    self._schedule_flush()
            if not self.members:
                await self._stop()

    def _queue_add(self, group: str) -> None:
        if self.failing:
            # Redis failed a moment ago: the retry writes it with the others, and no
            # handshake waits a deadline to learn what the last write already said.
            self.retry_adds.add(group)
            self._schedule_retry()
        else:
            self._adds[group] = self._new_future()
            self._schedule_flush()

    def _new_future(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A failure nobody waits for any more (the socket left) must not be reported as
        # "never retrieved".
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        return future

    def _schedule_flush(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_queued())

    async def _flush_queued(self) -> None:
        """Write queued adds and discards until none are left; one batch at a time, so a
        discard queued after an add is written after it."""
        while self._adds or self._discards:
            await asyncio.sleep(0)  # let the handshakes of this loop iteration queue theirs
            await self._flush_once()

    async def _flush_once(self) -> None:
        if not self._adds and not self._discards:
            return
        adds, self._adds = self._adds, {}
        discards, self._discards = self._discards, set()
        self._writing.update(adds)
        try:
            if self.channel is not None:
                async with asyncio.timeout(HUB_WRITE_SECONDS):
                    await write_memberships(self.layer, self.channel, list(adds), list(discards))
        except Exception as exc:
            logger.warning(
                "Writing %d group membership(s) failed (%r); retrying in %.1f s",
                len(adds) + len(discards),
                exc,
                self._retry_delay,
            )
            # Still wanted, still not written: the retry writes them when Redis answers.
            self.retry_adds.update(group for group in adds if group in self.members)
            self.retry_discards.update(group for group in discards if group not in self.members)
            self._schedule_retry()
            for future in adds.values():
                if not future.done():
                    future.set_exception(exc)
        else:
            self._retry_delay = RETRY_MIN_SECONDS
            for future in adds.values():
                if not future.done():
                    future.set_result(None)
        finally:
            for group, future in adds.items():
                if self._writing.get(group) is future:
                    del self._writing[group]

    def _schedule_retry(self) -> None:
        if self._retrier is None or self._retrier.done():
            self._retrier = asyncio.get_running_loop().create_task(self._retry_later())

    async def _retry_later(self) -> None:
        """After a back-off, queue the failed writes again (a failure schedules the next)."""
        await asyncio.sleep(self._retry_delay)
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_SECONDS)
        adds, self.retry_adds = self.retry_adds, set()
        discards, self.retry_discards = self.retry_discards, set()
        for group in adds:
            if group in self.members and group not in self._adds and group not in self._writing:
                self._adds[group] = self._new_future()
        self._discards.update(group for group in discards if group not in self.members)
        if self._adds or self._discards:
            self._schedule_flush()

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
            batch = groups[start : start + REFRESH_CONCURRENCY]
            try:
                async with asyncio.timeout(HUB_WRITE_SECONDS):
                    await asyncio.gather(*(self.layer.group_add(group, channel) for group in batch))
            except Exception as exc:
                logger.warning("Re-adding %d group(s) failed (%r)", len(groups) - start, exc)
                # The rest goes to the retry, which writes them as soon as Redis answers
                # rather than at the next refresh, REFRESH_SECONDS away.
                self.retry_adds.update(group for group in groups[start:] if group in self.members)
                self._schedule_retry()
                return

    async def _ensure_running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self.channel = await self.layer.new_channel()
        self._task = asyncio.get_running_loop().create_task(self._receive_loop())

    async def _stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._flush_once()  # the last discards, while the channel is known
        for name in ("_refreshing", "_retrier"):
            task = getattr(self, name)
            if task is not None:
                task.cancel()
                setattr(self, name, None)
        self.retry_adds.clear()
        self.retry_discards.clear()  # the channel is dropped: its memberships die with it
        self._retry_delay = RETRY_MIN_SECONDS
        task, self._task = self._task, None
        self.channel = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _receive_loop(self) -> None:
        delay = RETRY_MIN_SECONDS
        # channels-redis's receive loops on BZPOPMIN (brpop_timeout at a time) until a
        # message comes, so an idle receive and one on a dead (half-open) connection look
        # the same: restart it now and then. That costs nothing (redis-py drops the
        # connection of a cancelled command, and channels-redis keeps a message it popped in
        # a backup queue until it is handed over), and a dead connection is replaced.
        deadline = HUB_RECEIVE_SECONDS if hasattr(self.layer, "brpop_timeout") else None
        while True:
            channel = self.channel
            if channel is None:
                return
            try:
                async with asyncio.timeout(deadline):
                    event = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                logger.debug("Fan-out receive idle for %s s; receiving afresh", deadline)
                continue
            except Exception as exc:
                logger.warning("Fan-out receive failed (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                # Whatever broke may have taken the group memberships with it.
                with contextlib.suppress(Exception):
                    await self.refresh(force=True)
                continue
            delay = RETRY_MIN_SECONDS
            await self._fan_out_safely(event)
            # The messages queued behind this one come in batches (layer_receive): one
            # round trip for a burst, not four each.
            while True:
                with contextlib.suppress(Exception):
                    await self.refresh()
                if not await self._drain_batch(channel):
                    break

    async def _fan_out_safely(self, event: dict[str, Any]) -> None:
        try:
            await self.fan_out(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Fan-out of a %s event failed", event.get("type"))

    async def _drain_batch(self, channel: str) -> bool:
        """Fan out one batch of the messages waiting; False when none waited (or Redis
        failed: the blocking receive takes over, and the batch is back in the queue)."""
        if not self._drains:
            return False
        drain = self._drain
        if drain is None or drain.channel != channel:
            drain = self._drain = layer_receive.QueueDrain(self.layer, channel)
        try:
            async with asyncio.timeout(HUB_WRITE_SECONDS):
                batch = await drain.take()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("Taking queued fan-out messages failed (%r)", exc)
            with contextlib.suppress(Exception):  # if not now, before the next take
                async with asyncio.timeout(HUB_WRITE_SECONDS):
                    await drain.put_back()
            return False
        for index, event in enumerate(batch, start=1):
            await self._fan_out_safely(event)
            if index % YIELD_EVERY_EVENTS == 0:
                await asyncio.sleep(0)
        return bool(batch)

    def _handed_over_before(self, event: dict[str, Any]) -> bool:
        """Whether this process fanned out this very send before (``layer_created_event``)."""
        send = event.get("send")
        if send is None:
            return False
        if send in self._sends:
            return True
        if len(self._recent_sends) == self._recent_sends.maxlen:
            self._sends.discard(self._recent_sends[0])
        self._recent_sends.append(send)
        self._sends.add(send)
        return False

    async def fan_out(self, event: dict[str, Any]) -> int:
        """Hand one event to every local member of its group; return how many got it."""
        members = list(self.members.get(event.get("group", ""), ()))
        if not members:
            return 0
        if self._handed_over_before(event):
            logger.debug("Dropping a push handed over twice by the layer: %s", event["send"])
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


async def write_memberships(
    layer: BaseChannelLayer, channel: str, adds: list[str], discards: list[str]
) -> None:
    """Add ``channel`` to groups and remove it from others, adds first.

    With channels-redis, each shard gets one pipeline (ZADD and EXPIRE per add, exactly
    what its group_add does, ZREM per discard). Any other layer gets its own calls.
    """
    shard_of = getattr(layer, "consistent_hash", None)
    if shard_of is None or not hasattr(layer, "_group_key") or not hasattr(layer, "connection"):
        await asyncio.gather(*(layer.group_add(group, channel) for group in adds))
        await asyncio.gather(*(layer.group_discard(group, channel) for group in discards))
        return
    shards: dict[int, list[tuple[str, str]]] = {}
    for op, groups in (("add", adds), ("discard", discards)):
        for group in groups:
            shards.setdefault(shard_of(group), []).append((op, group))

    async def write(index: int, ops: list[tuple[str, str]]) -> None:
        now = time.time()
        async with layer.connection(index).pipeline(transaction=False) as pipe:
            for op, group in ops:
                key = layer._group_key(group)
                if op == "add":
                    pipe.zadd(key, {channel: now})
                    pipe.expire(key, layer.group_expiry)
                else:
                    pipe.zrem(key, channel)
            await pipe.execute()

    await asyncio.gather(*(write(index, ops) for index, ops in shards.items()))


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
    elif event["type"] == "notify.state":
        frame = event["frame"]
    elif event["type"] == "notify.preferences":
        frame = events.preferences_frame(event["preferences"])
    else:
        return None
    return json.dumps(frame, separators=(",", ":"))
