"""WebSocket clients for ``bench_notifications``: a process of its own, without Django.

The benchmark runs this file as a script (``python .../clients.py``), one or more times, and
talks to each process in JSON lines: one command on stdin, one reply on stdout. Every socket
is a logged-in user's socket: a real session cookie and an ``Origin`` header, through daphne,
the origin check and ``AuthMiddlewareStack`` (a user may hold several: the tabs of the triage
scenario). In ``bell`` mode a socket behaves like the socket of bell.js's leader tab, the one
socket a browser holds (its other tabs follow over BroadcastChannel and open none): ``sync``
after ``hello``, an ``ack`` for every notification, a ``ping`` every 30 s ± 15%, a ``sync`` when a
``pong`` names a last id it still does not hold two seconds later, and ``seen`` for every
pushed notification (bell.js toasts it); acks batched per socket over 250-1,000 ms and seen
ids over 2-4 s, as bell.js batches them. In ``passive`` mode it
only listens. A frame is timestamped with ``time.time()`` the moment ``recv()`` hands it over,
before it is parsed; a frame sent on command is timestamped right before ``send()``.

Commands, ``{"cmd": ...}``:

- ``connect`` ``{"urls": [...], "origin": str, "sockets": [[key, url_index, cookie], ...],
  "concurrency": n, "timeout": s, "mode": "bell" | "passive"}`` → ``{"ok": n, "failed":
  {key: error}, "started": t, "finished": t, "setup_ms": [...]}`` (a socket counts once its
  ``hello`` frame has arrived, i.e. once it has joined its groups);
- ``send`` ``{"frames": [[index, key, at, frame], ...]}`` → ``{"sent": [[index, t], ...],
  "failed": [index, ...]}``: sends each client frame from socket ``key`` at wall time ``at``
  (in order of ``at``; ``t`` is when it went);
- ``collect`` ``{"expect": n, "expect_events": n, "timeout": s, "settle": s}`` →
  ``{"arrivals": [[key, id, t], ...], "events": [[key, type, ids, t], ...], "frames": {type:
  count}, "closed": {key: code}}``: waits for ``n`` notification frames and ``expect_events``
  frames that name ids (the state frames ``read``, ``archived``, ``unarchived``, ``unread``,
  ``snoozed``, and ``recalled``), or the timeout, then ``settle`` seconds more to catch late
  or duplicate frames;
- ``close`` → ``{"closed": n}`` · ``status`` → ``{"open": n, "closed": {...}}`` · ``quit``.

End of input (the benchmark went away) closes every socket and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import json
import os
import random
import resource
import signal
import sys
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PING_EVERY = 30.0  # bell.js's PING_EVERY
PING_JITTER = (0.85, 1.15)  # bell.js: PING_EVERY * (0.85 + Math.random() * 0.3)
# bell.js batches both per socket: acks for ACK_DELAY (at most four frames a second, whatever
# arrives), seen ids for SEEN_DELAY (2 s: nothing waits for them), each plus a random part up
# to its SPREAD, so that browsers answering one broadcast do not answer it all at once.
DELAYS = {"ack": 0.25, "seen": 2.0}
SPREADS = {"ack": 0.75, "seen": 2.0}
MAX_IDS = 500  # the server's per-frame cap (NOTIFICATIONS["MAX_IDS"])
# The frames that tell every socket of a user about a change of state (other tabs follow).
STATE_FRAMES = frozenset({"read", "archived", "unarchived", "unread", "snoozed"})
# Frames naming notification ids whose arrival the benchmark times: the state frames, and
# ``recalled`` (the notifications left every bell of their audience).
ID_FRAMES = STATE_FRAMES | {"recalled"}
CLOSE_TIMEOUT = 10.0
SYNC_WAIT = 10.0  # longest wait for unanswered syncs before closing
PONG_GRACE = 2.0  # bell.js's PONG_GRACE (ms there): how long a push may trail its pong


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


class Clients:
    """Every socket of this process, and what they received since the last ``collect``."""

    def __init__(self) -> None:
        self.sockets: dict[int, ClientConnection] = {}
        self.readers: dict[int, asyncio.Task[None]] = {}
        self.next_ping: dict[int, float] = {}
        # (due, key), earliest first; an entry whose due no longer matches next_ping is stale.
        self.ping_queue: list[tuple[float, int]] = []
        self.syncing: set[int] = set()  # sockets whose sync has not been answered yet
        self.sync_answered = asyncio.Event()
        self.gap_syncs: set[asyncio.Task[None]] = set()  # held: the loop keeps weak refs
        self.arrivals: list[tuple[int, int, float]] = []
        self.events: list[tuple[int, str, list[int], float]] = []
        self.cursors: dict[int, int | None] = {}  # bell mode: each socket's sync cursor
        self.held: dict[int, set[int]] = {}  # bell mode: the ids each socket holds
        # Bell mode: ids waiting for their batch, by (frame type, socket), and when
        # (monotonic) each batch goes.
        self.waiting: dict[tuple[str, int], list[int]] = {}
        self.due: dict[tuple[str, int], float] = {}
        self.frames: Counter[str] = Counter()
        self.closed: dict[int, int | None] = {}
        self.arrived = asyncio.Event()
        self.mode = "bell"
        self.closing = False
        self.pinger: asyncio.Task[None] | None = None
        self.flusher: asyncio.Task[None] | None = None

    # ---- connect -------------------------------------------------------------------------

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        self.mode = command.get("mode", "bell")
        urls: list[str] = command["urls"]
        origin: str = command["origin"]
        timeout = float(command.get("timeout", 30.0))
        gate = asyncio.Semaphore(max(1, int(command.get("concurrency", 100))))
        started = time.time()
        results = await asyncio.gather(
            *(
                self._open(gate, int(key), urls[int(index)], origin, cookie, timeout)
                for key, index, cookie in command["sockets"]
            )
        )
        failed = {str(key): error for key, _, error in results if error is not None}
        setup_ms = [elapsed for _, elapsed, error in results if error is None]
        if self.mode == "bell" and self.pinger is None:
            self.pinger = asyncio.create_task(self._ping_forever())
            self.flusher = asyncio.create_task(self._flush_forever())
        return {
            "ok": len(setup_ms),
            "failed": failed,
            "started": started,
            "finished": time.time(),
            "setup_ms": setup_ms,
        }

    async def _open(
        self, gate: asyncio.Semaphore, key: int, url: str, origin: str, cookie: str, limit: float
    ) -> tuple[int, float, str | None]:
        async with gate:
            begun = time.perf_counter()
            ws: ClientConnection | None = None
            try:
                async with asyncio.timeout(limit):
                    ws = await connect(
                        url,
                        origin=origin,  # type: ignore[arg-type]
                        additional_headers={"Cookie": cookie},
                        open_timeout=None,
                        ping_interval=None,  # browsers do not ping; daphne pings them
                        close_timeout=CLOSE_TIMEOUT,
                        max_queue=None,
                    )
                    hello = json.loads(await ws.recv())
                if hello.get("type") != "hello":
                    raise ValueError(f"first frame was {hello.get('type')!r}, not hello")
            except ConnectionClosed as exc:
                return key, 0.0, f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"
            except Exception as exc:
                if ws is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), 2)
                return key, 0.0, f"{type(exc).__name__}: {exc}"[:200]
            elapsed = (time.perf_counter() - begun) * 1000
            self.sockets[key] = ws
            self.readers[key] = asyncio.create_task(self._read(key, ws))
            if self.mode == "bell":
                self._plan_ping(key, time.monotonic() + random.uniform(0, PING_EVERY))  # noqa: S311
                self.syncing.add(key)
                self.cursors[key] = hello.get("last_id")
                await self._send(ws, {"type": "sync", "since": hello.get("last_id")})
            return key, elapsed, None

    # ---- receive -------------------------------------------------------------------------

    async def _read(self, key: int, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                arrived = time.time()
                frame = json.loads(message)
                kind = frame.get("type") if isinstance(frame, dict) else None
                self.frames[str(kind)] += 1
                if kind == "notification":
                    notification_id = int(frame["notification"]["id"])
                    self.arrivals.append((key, notification_id, arrived))
                    self.arrived.set()
                    if self.mode == "bell":
                        self.held.setdefault(key, set()).add(notification_id)
                        self._queue("ack", key, [notification_id])
                        self._queue("seen", key, [notification_id])
                elif kind in ID_FRAMES:
                    ids = [int(i) for i in frame.get("ids", [])]
                    self.events.append((key, str(kind), ids, arrived))
                    self.arrived.set()
                elif kind == "missed" and self.mode == "bell":
                    self.syncing.discard(key)
                    self.sync_answered.set()
                    if frame.get("cursor") is not None:
                        self.cursors[key] = frame["cursor"]
                    ids = [item["id"] for item in frame.get("notifications", [])]
                    self.held.setdefault(key, set()).update(ids)
                    if ids:
                        self._queue("ack", key, ids)
                elif kind == "pong" and self.mode == "bell":
                    # As bell.js: a last id this socket still does not hold PONG_GRACE after
                    # the pong named it means a push was lost (the pong may have overtaken
                    # a push on its way to thousands of sockets).
                    last_id = frame.get("last_id")
                    if self._behind(key, last_id):
                        asyncio.get_running_loop().call_later(
                            PONG_GRACE, self._gap_sync_if_behind, key, ws, last_id
                        )
        except ConnectionClosed:
            pass
        except Exception as exc:  # a malformed frame: note it, keep the process alive
            self.frames[f"error:{type(exc).__name__}"] += 1
        finally:
            if not self.closing and self.sockets.get(key) is ws:
                self.closed[key] = ws.close_code
                self.sockets.pop(key, None)
                self.next_ping.pop(key, None)
                self.cursors.pop(key, None)
                self.held.pop(key, None)
                for kind in DELAYS:
                    self.waiting.pop((kind, key), None)
                    self.due.pop((kind, key), None)
                self.sync_answered.set()

    def _behind(self, key: int, last_id: int | None) -> bool:
        return (
            last_id is not None
            and last_id != self.cursors.get(key)
            and last_id not in self.held.get(key, ())
        )

    def _gap_sync_if_behind(self, key: int, ws: ClientConnection, last_id: int) -> None:
        if self.sockets.get(key) is not ws or self.closing or key in self.syncing:
            return
        if self._behind(key, last_id):
            self.syncing.add(key)
            self.frames["sent:gap_sync"] += 1
            task = asyncio.get_running_loop().create_task(
                self._send(ws, {"type": "sync", "since": self.cursors.get(key)})
            )
            self.gap_syncs.add(task)
            task.add_done_callback(self.gap_syncs.discard)

    def _queue(self, kind: str, key: int, ids: list[int]) -> None:
        waiting = self.waiting.get((kind, key))
        if waiting is None:
            self.waiting[(kind, key)] = list(ids)
            spread = random.uniform(0, SPREADS[kind])  # noqa: S311
            self.due[(kind, key)] = time.monotonic() + DELAYS[kind] + spread
        else:
            waiting.extend(ids)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for batch in [batch for batch, due in self.due.items() if due <= now]:
                self.due.pop(batch, None)
                ids = self.waiting.pop(batch, [])
                kind, key = batch
                ws = self.sockets.get(key)
                if ws is None or self.closing:
                    continue
                for start in range(0, len(ids), MAX_IDS):
                    self.frames[f"sent:{kind}"] += 1
                    await self._send(ws, {"type": kind, "ids": ids[start : start + MAX_IDS]})

    async def send_frames(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send client frames from given sockets at given wall times; say when each went."""
        plan = sorted(command["frames"], key=lambda item: float(item[2]))
        sent: list[list[Any]] = []
        failed: list[int] = []
        for index, key, at, frame in plan:
            delay = float(at) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            ws = self.sockets.get(int(key))
            if ws is None:
                failed.append(index)
                continue
            stamp = time.time()
            try:
                await ws.send(_dumps(frame))
            except ConnectionClosed:
                failed.append(index)
                continue
            sent.append([index, stamp])
        return {"sent": sent, "failed": failed}

    async def _send(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(_dumps(frame))

    def _plan_ping(self, key: int, at: float) -> None:
        self.next_ping[key] = at
        heapq.heappush(self.ping_queue, (at, key))

    async def _ping_forever(self) -> None:
        """Send each socket's ping at its own time, as browsers do (each bell pings on its
        own timer): a one-second tick sent a thirtieth of all pings at once, a burst of
        database calls in daphne every second that real traffic does not make. A heap, so
        this process (the measuring one) does not scan thousands of sockets per wake-up."""
        while True:
            now = time.monotonic()
            while self.ping_queue and self.ping_queue[0][0] <= now:
                at, key = heapq.heappop(self.ping_queue)
                ws = self.sockets.get(key)
                if ws is None or self.next_ping.get(key) != at:
                    continue  # closed, or planned again since
                # As bell.js: each ping 85-115% of PING_EVERY after the last. A fixed period
                # kept together every ping sent in one late wake-up: a clump of ~100
                # pings (database calls in daphne) every 30 s, T1's whole tail.
                self._plan_ping(key, now + PING_EVERY * random.uniform(*PING_JITTER))  # noqa: S311
                await self._send(ws, {"type": "ping"})
            upcoming = self.ping_queue[0][0] if self.ping_queue else now + 1.0
            await asyncio.sleep(min(1.0, max(0.005, upcoming - time.monotonic())))

    async def collect(self, command: dict[str, Any]) -> dict[str, Any]:
        expect = int(command.get("expect", 0))
        expect_events = int(command.get("expect_events", 0))
        timeout = float(command.get("timeout", 10.0))
        settle = float(command.get("settle", 0.0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (
            len(self.arrivals) < expect or len(self.events) < expect_events
        ) and loop.time() < deadline:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await self.arrived.wait()
        if settle > 0:
            await asyncio.sleep(settle)
        arrivals, self.arrivals = self.arrivals, []
        events, self.events = self.events, []
        frames, self.frames = dict(self.frames), Counter()
        closed, self.closed = {str(k): v for k, v in self.closed.items()}, {}
        return {"arrivals": arrivals, "events": events, "frames": frames, "closed": closed}

    # ---- close ---------------------------------------------------------------------------

    async def close_all(self) -> dict[str, Any]:
        # Let the server answer the syncs in flight first, as a page that stays a moment
        # would: closing under a reply makes daphne log the failed send.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SYNC_WAIT):
                while self.syncing & self.sockets.keys():
                    self.sync_answered.clear()
                    await self.sync_answered.wait()
        self.closing = True
        try:
            sockets = list(self.sockets.values())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT + 5):
                    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            for task in self.readers.values():
                task.cancel()
            await asyncio.gather(*self.readers.values(), return_exceptions=True)
        finally:
            self.sockets.clear()
            self.readers.clear()
            self.next_ping.clear()
            self.ping_queue.clear()
            self.syncing.clear()
            self.cursors.clear()
            self.held.clear()
            self.waiting.clear()
            self.due.clear()
            self.closing = False
        return {"closed": len(sockets)}

    def status(self) -> dict[str, Any]:
        return {"open": len(self.sockets), "closed": {str(k): v for k, v in self.closed.items()}}


def _reply(data: dict[str, Any]) -> None:
    sys.stdout.write(_dumps(data) + "\n")
    sys.stdout.flush()


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main() -> None:
    clients = Clients()
    _reply({"ready": True, "pid": os.getpid()})
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        try:
            command = json.loads(line)
            name = command.get("cmd")
            if name == "quit":
                break
            if name == "connect":
                result = await clients.connect(command)
                # Thousands of sockets are long-lived objects: move them out of the cyclic
                # collector's way, so its pauses in this measuring process do not show up
                # as notification latency.
                gc.collect()
                gc.freeze()
            elif name == "send":
                result = await clients.send_frames(command)
            elif name == "collect":
                result = await clients.collect(command)
            elif name == "close":
                result = await clients.close_all()
            elif name == "status":
                result = clients.status()
            else:
                result = {"error": f"unknown command {name!r}"}
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        _reply(result)
    await clients.close_all()


if __name__ == "__main__":
    # Ctrl-C belongs to the benchmark, which tells us to stop; so does the end of stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _raise_fd_limit()
    asyncio.run(main())
