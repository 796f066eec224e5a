"""A Python "bell client" for the fault tests: what bell.js does, over a real WebSocket.

It connects to daphne with a session cookie and an Origin header, reads ``hello``, sends
``sync`` after every (re)connect, acks what arrives (in batches, as a tab would), pings every
``ping_interval`` seconds and syncs when a ``pong`` names a newer ``last_id`` than it has,
and reconnects with jittered exponential back-off after a drop. It records every id received
by push and by sync separately, counts pushes that arrive twice, and keeps what a bell would
show: each notification once, with its read state.

Clients run as asyncio tasks on a :class:`ClientLoop` (an event loop in a daemon thread), so
synchronous tests can drive the ORM and the processes while the clients live on.

The ``sync`` cursor follows bell.js exactly: it is the ``cursor`` of the last ``missed``
answer to a sync sent from it (the server's, which never passes a row still settling); pushes
are shown at once but never move it, so any ``pong`` whose ``last_id`` is not the cursor
triggers a ``sync`` that re-reads everything delivered after it — a dropped push is recovered
wherever it fell. A full answer (``MAX_SYNC`` items) is followed by a sync from its last item.
There is no other fallback: tests/faults/browser_pages.py checks real pages running bell.js
against the same faults, and the two must behave alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

MAX_IDS_PER_FRAME = 500
CLOSE_UNAUTHENTICATED = 4401


@dataclass
class Snapshot:
    """A consistent copy of a client's records, safe to read from any thread."""

    name: str
    pushes: list[int]
    synced: list[int]
    shown: dict[int, bool]  # id -> read
    duplicate_pushes: int
    connects: int
    close_codes: list[int | None]
    syncs_sent: int
    gap_syncs: int
    errors: list[dict]
    titles: dict[int, str]
    sync_cursor: int | None

    @property
    def ids(self) -> set[int]:
        return set(self.shown)

    @property
    def unread(self) -> int:
        return sum(1 for read in self.shown.values() if not read)

    @property
    def push_only(self) -> set[int]:
        """Never returned by a ``sync`` (pushed, and settled before a sync re-read them)."""
        return set(self.pushes) - set(self.synced)

    @property
    def sync_only(self) -> set[int]:
        """Recovered by ``sync`` (pushes lost, noticed by ``pong.last_id``)."""
        return set(self.synced) - set(self.pushes)


@dataclass
class FinalSync:
    """What a fresh tab learns: hello's counts and every id, read by paging ``sync``."""

    unread: int
    last_id: int | None
    ids: list[int] = field(default_factory=list)
    unread_ids: list[int] = field(default_factory=list)


class BellClient:
    """One tab's socket. Create it, then start it on a :class:`ClientLoop`."""

    def __init__(
        self,
        url: str,
        cookie: str,
        origin: str,
        *,
        name: str = "bell",
        ping_interval: float = 0.5,
        ack_interval: float = 0.25,
        pong_timeout: float = 10.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 2.0,
        max_sync: int = 200,
    ) -> None:
        self.url = url
        self.cookie = cookie
        self.origin = origin
        self.name = name
        self.ping_interval = ping_interval
        self.ack_interval = ack_interval
        self.pong_timeout = pong_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_sync = max_sync

        self._lock = threading.Lock()
        self.pushes: list[int] = []
        self.synced: list[int] = []
        self.shown: dict[int, bool] = {}
        self.titles: dict[int, str] = {}
        self.duplicate_pushes = 0
        self.connects = 0
        self.close_codes: list[int | None] = []
        self.syncs_sent = 0
        self.gap_syncs = 0
        self.errors: list[dict] = []
        self.hellos: list[dict] = []
        self.gave_up = False

        self.sync_cursor: int | None = None
        self.server_unread: int | None = None
        self.server_last_id: int | None = None
        self._pending_acks: list[int] = []
        self._asked: list[int | None] = []  # the ``since`` of each sync in flight, in order
        self._awaiting_pong_since: float | None = None
        self._ws: ClientConnection | None = None
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._future: concurrent.futures.Future | None = None
        self.hello_seen = threading.Event()

    # ---- reading the records (any thread) ----------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                name=self.name,
                pushes=list(self.pushes),
                synced=list(self.synced),
                shown=dict(self.shown),
                duplicate_pushes=self.duplicate_pushes,
                connects=self.connects,
                close_codes=list(self.close_codes),
                syncs_sent=self.syncs_sent,
                gap_syncs=self.gap_syncs,
                errors=list(self.errors),
                titles=dict(self.titles),
                sync_cursor=self.sync_cursor,
            )

    def ids(self) -> set[int]:
        with self._lock:
            return set(self.shown)

    # ---- life cycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, and reconnect after every drop, until ``stop()``."""
        self._loop = asyncio.get_running_loop()
        attempt = 0
        while not self._stopping.is_set():
            code: int | None = None
            try:
                async with connect(
                    self.url,
                    origin=self.origin,
                    additional_headers={"Cookie": self.cookie},
                    open_timeout=5,
                    ping_interval=None,  # the app-level ping below is the bell's heartbeat
                    close_timeout=1,
                    proxy=None,
                    max_size=2**24,
                ) as ws:
                    self._ws = ws
                    if await self._session(ws):
                        attempt = 0  # only a hello proves the server healthy again
                    code = ws.close_code
            except InvalidStatus as exc:
                code = exc.response.status_code
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                code = getattr(exc, "code", None)
            finally:
                self._ws = None
            if self._stopping.is_set():
                break
            with self._lock:
                self.close_codes.append(code)
            if code == CLOSE_UNAUTHENTICATED:
                self.gave_up = True  # the page would ask the user to log in again
                break
            delay = min(self.backoff_cap, self.backoff_base * 2**attempt)
            attempt = min(attempt + 1, 10)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay * random.uniform(0.5, 1.0))

    async def _session(self, ws: ClientConnection) -> bool:
        """One connection's life; True when the server said hello."""
        self._asked = []
        self._awaiting_pong_since = None
        try:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except (TimeoutError, ConnectionClosed, ValueError):
            return False
        if hello.get("type") != "hello":
            return False
        with self._lock:
            self.connects += 1
            self.hellos.append(hello)
        self.server_last_id = hello.get("last_id")
        await self._sync()
        self.hello_seen.set()
        tasks = [
            asyncio.create_task(self._ping_forever(ws)),
            asyncio.create_task(self._ack_forever(ws)),
        ]
        stop_waiter = asyncio.create_task(self._stopping.wait())
        try:
            reader = asyncio.create_task(self._read_forever(ws))
            await asyncio.wait({reader, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                await self._flush_acks(ws)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            stop_waiter.cancel()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task
        return True

    async def _read_forever(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                await self._on_frame(json.loads(raw))

    async def _ping_forever(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            now = time.monotonic()
            if (
                self._awaiting_pong_since is not None
                and now - self._awaiting_pong_since > self.pong_timeout
            ):
                # No pong: the connection is dead even if TCP has not noticed.
                await ws.close(code=4000, reason="pong timeout")
                return
            await self._send({"type": "ping"})
            if self._awaiting_pong_since is None:
                self._awaiting_pong_since = now

    async def _ack_forever(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.ack_interval)
            await self._flush_acks(ws)

    async def _flush_acks(self, ws: ClientConnection) -> None:
        while self._pending_acks:
            batch = self._pending_acks[:MAX_IDS_PER_FRAME]
            del self._pending_acks[:MAX_IDS_PER_FRAME]
            await self._send({"type": "ack", "ids": batch})

    async def _send(self, frame: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(frame))

    def stop(self, timeout: float = 10.0) -> None:
        """Close the socket and end ``run()``; callable from any thread."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        loop.call_soon_threadsafe(self._stopping.set)
        if self._future is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError, asyncio.CancelledError):
                self._future.result(timeout)

    # ---- frames -------------------------------------------------------------------------

    async def _sync(self, *, gap: bool = False, since: int | str | None = "cursor") -> None:
        start = self.sync_cursor if since == "cursor" else since
        self._asked.append(start)  # type: ignore[arg-type]
        with self._lock:
            self.syncs_sent += 1
            if gap:
                self.gap_syncs += 1
        await self._send({"type": "sync", "since": start})

    def _remember(self, notification: dict) -> bool:
        """Show a notification once; return True when it is new to this tab."""
        nid = notification["id"]
        if nid in self.shown:
            return False
        self.shown[nid] = bool(notification.get("read"))
        self.titles[nid] = notification.get("title", "")
        return True

    async def _on_frame(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "notification":
            notification = frame["notification"]
            with self._lock:
                if notification["id"] in self.pushes:
                    self.duplicate_pushes += 1
                self.pushes.append(notification["id"])
                fresh = self._remember(notification)
            if fresh:
                self._pending_acks.append(notification["id"])
        elif kind == "missed":
            items = frame["notifications"]
            asked = self._asked.pop(0) if self._asked else self.sync_cursor
            with self._lock:
                for notification in items:
                    self.synced.append(notification["id"])
                    if self._remember(notification):
                        self._pending_acks.append(notification["id"])
            # As bell.js: only the answer to a sync sent from the cursor moves it, to the
            # server's cursor (behind rows still settling; they come again, shown once).
            before = self.sync_cursor
            if asked == self.sync_cursor:
                if frame.get("cursor") is not None:
                    self.sync_cursor = frame["cursor"]
                elif "cursor" not in frame and items:
                    self.sync_cursor = items[-1]["id"]
                elif "cursor" not in frame and self.sync_cursor is None:
                    self.sync_cursor = 0
            if frame.get("next") is not None:
                # The answer was capped (rows or bytes): the server says where to go on.
                await self._sync(since=frame["next"])
            elif len(items) >= self.max_sync:
                # The answer was capped: ask for the rest, from its last item.
                if asked is not None:
                    await self._sync(since=items[-1]["id"])
                elif self.sync_cursor != before:
                    await self._sync()
        elif kind == "pong":
            self._awaiting_pong_since = None
            last_id = frame.get("last_id")
            self.server_last_id = last_id
            self.server_unread = frame.get("unread")
            if not self._asked and last_id is not None and last_id != self.sync_cursor:
                await self._sync(gap=True)
        elif kind == "read":
            with self._lock:
                for nid in frame.get("ids", []):
                    if nid in self.shown:
                        self.shown[nid] = True
        elif kind == "error":
            with self._lock:
                self.errors.append(frame)

    async def read(self, ids: list[int]) -> None:
        await self._send({"type": "read", "ids": ids})

    # ---- a fresh tab's view -------------------------------------------------------------

    async def final_sync(self, timeout: float = 10.0) -> FinalSync:
        """Open a new socket and read everything the server holds for this user."""
        async with connect(
            self.url,
            origin=self.origin,
            additional_headers={"Cookie": self.cookie},
            open_timeout=5,
            ping_interval=None,
            close_timeout=1,
            proxy=None,
            max_size=2**24,
        ) as ws:

            async def next_of(kind: str) -> dict:
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                    if frame.get("type") == kind:
                        return frame

            hello = await next_of("hello")
            result = FinalSync(unread=hello["unread"], last_id=hello["last_id"])
            since = 0
            while True:
                await ws.send(json.dumps({"type": "sync", "since": since}))
                answer = await next_of("missed")
                items = answer["notifications"]
                result.ids.extend(n["id"] for n in items)
                result.unread_ids.extend(n["id"] for n in items if not n["read"])
                if answer.get("next") is not None:
                    since = answer["next"]
                    continue
                if len(items) < self.max_sync:
                    return result
                since = items[-1]["id"]


class ClientLoop:
    """An asyncio event loop in a daemon thread, running bell clients for a sync test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clients: list[BellClient] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def start(self, client: BellClient) -> BellClient:
        client._loop = self.loop
        client._future = asyncio.run_coroutine_threadsafe(client.run(), self.loop)
        self.clients.append(client)
        return client

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def failures(self) -> list[BaseException]:
        """Exceptions that ended a client's ``run()`` (there should be none)."""
        return [
            exc
            for client in self.clients
            if client._future is not None
            and client._future.done()
            and not client._future.cancelled()
            and (exc := client._future.exception()) is not None
        ]

    def stop_clients(self) -> None:
        for client in self.clients:
            self.loop.call_soon_threadsafe(client._stopping.set)
        for client in self.clients:
            client.stop()

    def close(self) -> None:
        self.stop_clients()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self.loop.is_running():
            self.loop.close()
