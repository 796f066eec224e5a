"""The benchmark's side of its helper processes: socket clients and notification creators."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notifyproject.demo.bench.workers import BenchError, Worker

CLIENTS_SCRIPT = Path(__file__).with_name("clients.py")
SOCKETS_PER_PROCESS = 2500
MAX_CLIENT_PROCESSES = 8


@dataclass(frozen=True)
class Socket:
    """One open WebSocket: which user it logged in as, which daphne and client process hold it."""

    key: int
    user_id: Any  # the user model's primary key
    daphne: int
    worker: int


@dataclass
class Opened:
    """The outcome of opening a batch of sockets."""

    sockets: list[Socket]
    failed: dict[str, str]
    elapsed: float
    setup_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return len(self.sockets) / self.elapsed if self.elapsed > 0 and self.sockets else None

    def failure_summary(self, limit: int = 3) -> str:
        counts = Counter(self.failed.values())
        return "; ".join(f"{n} x {error}" for error, n in counts.most_common(limit))


@dataclass
class Collected:
    arrivals: list[tuple[int, int, float]]
    frames: Counter[str]
    closed: dict[str, Any]
    # Frames naming ids (read, archived, unarchived, unread, snoozed, recalled):
    # (key, type, ids, time).
    events: list[tuple[int, str, list[int], float]] = field(default_factory=list)

    def arrivals_of(self, kind: str, notification_id: int) -> list[tuple[int, float]]:
        """(socket key, time) of every ``kind`` frame naming the notification, in time order
        (a socket that got it twice is there twice)."""
        return sorted(
            (
                (key, at)
                for key, frame_kind, ids, at in self.events
                if frame_kind == kind and notification_id in ids
            ),
            key=lambda item: item[1],
        )


@dataclass(frozen=True)
class Outgoing:
    """A client frame for socket ``key`` to send at wall time ``at``."""

    key: int
    at: float
    frame: dict[str, Any]


class ClientPool:
    """Client processes (``clients.py``) and the sockets they hold, spread round-robin."""

    def __init__(
        self, *, env: dict[str, str], cwd: Path, log_dir: Path, mode: str, processes: int | None
    ) -> None:
        self.env = env
        self.cwd = cwd
        self.log_dir = log_dir
        self.mode = mode
        self.processes = processes
        self.workers: list[Worker] = []
        self.sockets: dict[int, Socket] = {}
        self._next_key = 0

    def _ensure_workers(self, count: int) -> None:
        if not self.sockets:  # no socket refers to a worker by position: drop dead ones
            for worker in [w for w in self.workers if not w.alive()]:
                worker.stop()
                self.workers.remove(worker)
        started = []
        while len(self.workers) < count:
            index = len(self.workers) + 1
            worker = Worker(
                f"clients-{index}",
                [sys.executable, str(CLIENTS_SCRIPT)],
                env=self.env,
                cwd=self.cwd,
                log_path=self.log_dir / f"clients-{index}.log",
            )
            self.workers.append(worker)
            started.append(worker)
        for worker in started:
            worker.wait_ready(30)

    def process_count(self, sockets: int) -> int:
        if self.processes:
            return self.processes
        return max(1, min(MAX_CLIENT_PROCESSES, math.ceil(sockets / SOCKETS_PER_PROCESS)))

    def open(
        self,
        user_ids: Sequence[Any],
        cookies: dict[Any, str],
        urls: Sequence[str],
        *,
        origin: str,
        concurrency: int,
        daphne_of: Callable[[int], int] | None = None,
    ) -> Opened:
        """Open one socket per user (the ``i``-th on daphne ``daphne_of(i)``, default i mod n)."""
        processes = self.process_count(len(user_ids))
        self._ensure_workers(processes)
        plans: list[list[list[Any]]] = [[] for _ in range(processes)]
        planned: dict[int, Socket] = {}
        for index, user_id in enumerate(user_ids):
            daphne = daphne_of(index) if daphne_of else index % len(urls)
            worker = index % processes
            key = self._next_key
            self._next_key += 1
            planned[key] = Socket(key, user_id, daphne, worker)
            plans[worker].append([key, daphne, cookies[user_id]])
        timeout = 60 + len(user_ids) / 20
        per_worker = max(1, concurrency // processes)
        for worker, plan in zip(self.workers, plans, strict=False):
            if plan:
                worker.send(
                    {
                        "cmd": "connect",
                        "urls": list(urls),
                        "origin": origin,
                        "sockets": plan,
                        "concurrency": per_worker,
                        "timeout": 30,
                        "mode": self.mode,
                    }
                )
        failed: dict[str, str] = {}
        setup_ms: list[float] = []
        starts: list[float] = []
        ends: list[float] = []
        for worker, plan in zip(self.workers, plans, strict=False):
            if not plan:
                continue
            reply = worker.receive(timeout)
            failed.update(reply.get("failed", {}))
            setup_ms.extend(reply.get("setup_ms", []))
            starts.append(reply["started"])
            ends.append(reply["finished"])
        opened = [s for key, s in planned.items() if str(key) not in failed]
        self.sockets.update({s.key: s for s in opened})
        elapsed = max(ends) - min(starts) if starts else 0.0
        return Opened(opened, failed, elapsed, setup_ms)

    def send(
        self, outgoing: Sequence[Outgoing], *, tick: Callable[[], None] | None = None
    ) -> list[float | None]:
        """Have the sockets send these frames at their times; return when each went (None:
        its socket was closed)."""
        plans: dict[int, list[list[Any]]] = {}
        for index, item in enumerate(outgoing):
            socket = self.sockets[item.key]
            plans.setdefault(socket.worker, []).append([index, item.key, item.at, item.frame])
        for worker_index, plan in plans.items():
            self.workers[worker_index].send({"cmd": "send", "frames": plan})
        sent: list[float | None] = [None] * len(outgoing)
        last = max((item.at for item in outgoing), default=0.0)
        for worker_index in plans:
            wait = max(0.0, last - time.time()) + 60
            reply = self.workers[worker_index].receive(wait, tick=tick)
            for index, at in reply["sent"]:
                sent[int(index)] = float(at)
        return sent

    def collect(
        self,
        expected: Counter[int],
        *,
        timeout: float,
        settle: float,
        expected_events: Counter[int] | None = None,
    ) -> Collected:
        """Gather the frames received since the last call, waiting for ``expected``
        notification frames (and ``expected_events`` frames naming ids) per socket."""
        per_worker: Counter[int] = Counter()
        events_per_worker: Counter[int] = Counter()
        for counts, totals in ((expected, per_worker), (expected_events or {}, events_per_worker)):
            for key, count in counts.items():
                socket = self.sockets.get(key)
                if socket is not None:
                    totals[socket.worker] += count
        busy = [
            (index, worker)
            for index, worker in enumerate(self.workers)
            if per_worker[index]
            or events_per_worker[index]
            or any(s.worker == index for s in self.sockets.values())
        ]
        for index, worker in busy:
            worker.send(
                {
                    "cmd": "collect",
                    "expect": per_worker[index],
                    "expect_events": events_per_worker[index],
                    "timeout": timeout,
                    "settle": settle,
                }
            )
        result = Collected([], Counter(), {})
        for _, worker in busy:
            reply = worker.receive(timeout + settle + 60)
            result.arrivals.extend((int(k), int(i), float(t)) for k, i, t in reply["arrivals"])
            result.events.extend(
                (int(k), str(kind), [int(i) for i in ids], float(t))
                for k, kind, ids, t in reply.get("events", [])
            )
            result.frames.update(reply.get("frames", {}))
            result.closed.update(reply.get("closed", {}))
        return result

    def open_count(self) -> int:
        total = 0
        for worker in self.workers:
            if worker.alive():
                total += int(worker.request({"cmd": "status"}, 30).get("open", 0))
        return total

    def close(self) -> None:
        """Close every socket (each client process closes its own, concurrently)."""
        live = [w for w in self.workers if w.alive()]
        for worker in live:
            worker.send({"cmd": "close"})
        for worker in live:
            worker.receive(120)
        self.sockets.clear()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []
        self.sockets.clear()


class Creators:
    """Processes that commit notifications (``creator.py``), started once per run."""

    def __init__(self, *, env: dict[str, str], cwd: Path, log_dir: Path, count: int) -> None:
        self.env = env
        self.cwd = cwd
        self.log_dir = log_dir
        self._started = 0
        self.workers: list[Worker] = [self._start() for _ in range(count)]

    def _start(self) -> Worker:
        self._started += 1
        name = f"creator-{self._started}"
        return Worker(
            name,
            [sys.executable, "-m", "notifyproject.demo.bench.creator"],
            env=self.env,
            cwd=self.cwd,
            log_path=self.log_dir / f"{name}.log",
        )

    def get(self, index: int) -> Worker:
        """Return creator ``index`` (0-based), restarting it if it died; ready to use."""
        while len(self.workers) <= index:
            self.workers.append(self._start())
        worker = self.workers[index]
        if not worker.alive():
            worker.stop()
            worker = self.workers[index] = self._start()
        worker.wait_ready(60)
        return worker

    def verify(self, *, channel: str, prefix: str, database: str) -> None:
        """Refuse to run if the creators do not use the run's channel, prefix and database."""
        hello = self.get(0).wait_ready()
        problems = []
        if hello.get("channel") != channel:
            problems.append(f"pub/sub channel {hello.get('channel')!r} (wanted {channel!r})")
        if hello.get("prefix") != prefix:
            problems.append(f"channel-layer prefix {hello.get('prefix')!r} (wanted {prefix!r})")
        if hello.get("database") != database:
            problems.append(f"database {hello.get('database')!r} (wanted {database!r})")
        if problems:
            raise BenchError(
                "the child processes would not be isolated from the site: their settings give "
                + "; ".join(problems)
                + ". The settings must read NOTIFICATIONS_CHANNEL, CHANNELS_PREFIX and "
                "DATABASE_URL from the environment."
            )

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []
