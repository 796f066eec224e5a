"""The scenarios of issue 5: P1-P5, the peers and scale; each fills in a ``ScenarioRun``.

(Issue 11's triage scenarios, T1 and T2, are in ``triage``, issue 12's M2 and R1 in
``preferences``; they share the steps below.)

Latency is always commit → frame: the creator stamps ``time.time()`` right after COMMIT (see
``creator.py``), each client process stamps ``time.time()`` when a frame reaches it, and both
run on this machine's clock. Frames are matched per (notification id, socket): missing,
duplicate and unexpected frames are counted, never dropped from the figures silently.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max

from notifications.models import Delivery, DeliveryState, Notification
from notifyproject.demo.bench import peers
from notifyproject.demo.bench.config import FIGURES, POLLING_MEAN_MS, Options, Sizes
from notifyproject.demo.bench.pool import ClientPool, Creators, Opened
from notifyproject.demo.bench.population import Population, wire_ids
from notifyproject.demo.bench.report import Progress
from notifyproject.demo.bench.stack import Stack
from notifyproject.demo.bench.stats import latency_summary, percentile, slope, summarize
from notifyproject.demo.bench.workers import BenchError

SETTLE_SECONDS = 0.3  # after the expected frames arrived: time for late or duplicate ones


@dataclass
class ScenarioRun:
    """What one scenario measured: a dict of figures per repetition, plus context."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    repetitions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    child_errors: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def median(self, key: str) -> float | None:
        return summarize([rep.get(key) for rep in self.repetitions])["median"]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass
class Context:
    """Everything a scenario drives."""

    options: Options
    sizes: Sizes
    population: Population
    stack: Stack
    clients: ClientPool
    creators: Creators
    progress: Progress
    origin: str
    results: dict[str, ScenarioRun] = field(default_factory=dict)


@dataclass
class Match:
    """Frames matched against the (notification, socket) pairs that should have arrived."""

    expected: int
    first: dict[tuple[int, int], float]
    duplicates: int
    unexpected: int
    commits: dict[int, float]
    frames: dict[str, int] = field(default_factory=dict)
    closed: dict[str, Any] = field(default_factory=dict)

    @property
    def received(self) -> int:
        return len(self.first)

    @property
    def missing(self) -> int:
        return self.expected - self.received

    def latencies(self, ids: set[int] | None = None) -> list[float]:
        """Commit → first arrival in milliseconds, for every received pair (of ``ids``)."""
        return [
            (at - self.commits[nid]) * 1000
            for (nid, _key), at in self.first.items()
            if ids is None or nid in ids
        ]

    def keys_reached(self) -> set[int]:
        return {key for _nid, key in self.first}

    def counts(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "received": self.received,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "unexpected": self.unexpected,
            "frames": dict(sorted(self.frames.items())),
            "closed_by_server": len(self.closed),
        }


def match(
    expected: dict[int, set[int]], commits: dict[int, float], arrivals: list[tuple[int, int, float]]
) -> Match:
    first: dict[tuple[int, int], float] = {}
    duplicates = unexpected = 0
    for key, nid, at in sorted(arrivals, key=lambda arrival: arrival[2]):
        if key not in expected.get(nid, ()):
            unexpected += 1
        elif (nid, key) in first:
            duplicates += 1
        else:
            first[(nid, key)] = at
    total = sum(len(keys) for keys in expected.values())
    return Match(total, first, duplicates, unexpected, commits)


# ---- shared steps -------------------------------------------------------------------------


def repetitions(ctx: Context, run: ScenarioRun) -> Iterator[int]:
    """Yield 1..repeat, checking the stack and letting it settle before each repetition."""
    for rep in range(1, ctx.options.repeat + 1):
        ctx.stack.check()
        ctx.stack.settle()
        ctx.progress.phase(f"{run.name} repetition {rep}/{ctx.options.repeat}")
        yield rep


def open_sockets(
    ctx: Context,
    user_ids: Sequence[Any],
    run: ScenarioRun | None = None,
    daphne_of: Callable[[int], int] | None = None,
) -> Opened:
    """Open one socket per user over the running daphnes; fail if none opened."""
    ctx.progress.phase(f"opening {len(user_ids)} sockets")
    cookies = ctx.population.cookies(user_ids)
    opened = ctx.clients.open(
        user_ids,
        cookies,
        ctx.stack.ws_urls(),
        origin=ctx.origin,
        concurrency=ctx.options.connect_concurrency,
        daphne_of=daphne_of,
    )
    rate = f"{opened.rate:.0f}/s" if opened.rate else "-"
    ctx.progress.phase(f"{len(opened.sockets)} sockets open ({rate})")
    if opened.failed and run is not None:
        run.note(
            f"{len(opened.failed)} of {len(user_ids)} sockets failed to open: "
            f"{opened.failure_summary()}"
        )
    if not opened.sockets:
        raise BenchError(f"no socket could be opened: {opened.failure_summary()}")
    return opened


def sockets_by_user(opened: Opened) -> dict[Any, set[int]]:
    by_user: dict[Any, set[int]] = {}
    for socket in opened.sockets:
        by_user.setdefault(socket.user_id, set()).add(socket.key)
    return by_user


@dataclass(frozen=True)
class Created:
    """One committed single-user notification, with wall times from the creator."""

    id: int
    recipient: Any  # the user model's primary key
    committed: float
    called: float  # notify() was called
    returned: float  # notify() returned (after COMMIT and PUBLISH)

    @property
    def call_ms(self) -> float:
        return (self.returned - self.called) * 1000


def call_summary(created: Sequence[Created]) -> dict[str, float | None]:
    """p50/p99 of the notify() calls themselves: INSERT, COMMIT, PUBLISH and lock waits."""
    calls = [row.call_ms for row in created]
    return {"call_p50_ms": percentile(calls, 50), "call_p99_ms": percentile(calls, 99)}


def create_single(
    ctx: Context, creator: int, *, run: ScenarioRun | None = None, **fields: Any
) -> list[Created]:
    """Have a creator commit single-user notifications, one transaction each, and wait for
    them; ``fields`` are ``send_single``'s."""
    worker, started = send_single(ctx, creator, **fields)
    return single_reply(ctx, worker, started, fields.get("duration"), fields.get("count"), run)


def send_single(
    ctx: Context,
    creator: int,
    *,
    recipients: Sequence[Any],
    title: str,
    rate: float | None = None,
    duration: float | None = None,
    count: int | None = None,
    start_at: float | None = None,
    group_key: str = "",
    actors: Sequence[Any] = (),
) -> tuple[Any, float]:
    """Start a creator on single-user notifications; ``single_reply`` collects them (two
    creators can run at once). ``group_key`` and ``actors`` (taking turns) go to notify()."""
    worker = ctx.creators.get(creator)
    started = time.monotonic()
    worker.send(
        {
            "cmd": "single",
            "recipients": wire_ids(recipients),
            "rate": rate,
            "duration": duration,
            "count": count,
            "start_at": start_at or time.time() + 0.2,
            "title": title,
            "group_key": group_key,
            "actors": wire_ids(actors),
        }
    )
    return worker, started


def single_reply(
    ctx: Context,
    worker: Any,
    started: float,
    duration: float | None,
    count: int | None,
    run: ScenarioRun | None,
) -> list[Created]:
    limit = (duration or 0) + (count or 0) / 20 + 120

    def tick() -> None:
        elapsed = time.monotonic() - started
        total = f"/{duration:.0f}" if duration else ""
        ctx.progress.status(f"creating notifications: {elapsed:.0f}{total} s")

    reply = worker.receive(limit, tick=tick)
    if reply.get("errors") and run is not None:
        run.note(f"the creator failed {reply['errors']} time(s): {reply.get('error')}")
    return [
        Created(int(row[0]), ctx.population.user_id(row[1]), *(float(v) for v in row[2:5]))
        for row in reply["created"]
    ]


def broadcast(
    ctx: Context, creator: int, title: str, category: str | None = None
) -> tuple[int, float]:
    """Commit one broadcast to the run's audience (in ``category``, default the settings'
    default category); return its id and commit time."""
    command: dict[str, Any] = {
        "cmd": "broadcast",
        "audience": ctx.population.audience,
        "group": ctx.population.group_id,
        "title": title,
    }
    if category is not None:
        command["category"] = category
    reply = ctx.creators.get(creator).request(command, 60)
    return int(reply["id"]), float(reply["t"])


def wait_deliveries(
    notification_id: int, expected: int, committed_at: float, timeout: float = 120.0
) -> tuple[float | None, int]:
    """Poll until ``expected`` Delivery rows of the notification are visible.

    Returns (milliseconds after the commit, rows seen); None if the wait timed out. The poll
    interval (10-50 ms, longer for bigger audiences) bounds the figure's resolution.
    """
    interval = min(0.05, max(0.01, expected / 2_000_000))
    rows = Delivery.objects.filter(notification_id=notification_id)
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = rows.count()
        if count >= expected:
            return (time.time() - committed_at) * 1000, count
        time.sleep(interval)
    return None, count


def wait_acked(ids: Sequence[int], want: int) -> tuple[int, float | None]:
    """Wait until ``want`` of these notifications' Delivery rows are no longer pending.

    Returns how many were, and the seconds the wait took (None if it gave up: after 5 s plus
    a second per 500 acks). Bell-mode clients ack every frame, as bell.js does.
    """
    started = time.monotonic()
    deadline = started + 5 + want / 500
    while True:
        done = 0
        for start in range(0, len(ids), 900):
            done += (
                Delivery.objects.filter(notification_id__in=ids[start : start + 900])
                .exclude(state=DeliveryState.PENDING)
                .count()
            )
        if done >= want:
            return done, time.monotonic() - started
        if time.monotonic() >= deadline:
            return done, None
        time.sleep(0.1)


def collect(ctx: Context, expected: dict[int, set[int]], commits: dict[int, float]) -> Match:
    """Gather the clients' frames and match them against ``expected``."""
    ctx.progress.status("collecting frames")
    per_socket: Counter[int] = Counter()
    for keys in expected.values():
        per_socket.update(keys)
    collected = ctx.clients.collect(
        per_socket, timeout=ctx.sizes.collect_timeout, settle=SETTLE_SECONDS
    )
    found = match(expected, commits, collected.arrivals)
    found.frames = dict(collected.frames)
    found.closed = collected.closed
    return found


def measure_broadcast(
    ctx: Context, opened: Opened, audience: int, title: str, run: ScenarioRun
) -> dict[str, Any]:
    """One broadcast to the audience: latency to every open socket, rows persisted, CPU."""
    keys = {socket.key for socket in opened.sockets}
    daphne_cpu, listener_cpu = ctx.stack.cpu("daphne"), ctx.stack.cpu("listener")
    nid, committed_at = broadcast(ctx, 0, title)
    persisted_ms, rows = wait_deliveries(nid, audience, committed_at)
    if persisted_ms is None:
        run.note(f"only {rows} of {audience} Delivery rows appeared within the wait")
    found = collect(ctx, {nid: keys}, {nid: committed_at})
    figures: dict[str, Any] = {
        **latency_summary(found.latencies()),
        **found.counts(),
        "persisted_ms": persisted_ms,
        "deliveries": rows,
        "audience": audience,
        "daphne_cpu_us_per_socket": (ctx.stack.cpu("daphne") - daphne_cpu) * 1e6 / len(keys),
        "listener_cpu_ms": (ctx.stack.cpu("listener") - listener_cpu) * 1000,
        "reached_by_daphne": dict(sorted(Counter(daphnes_of(ctx, found.keys_reached())).items())),
    }
    if ctx.options.client_mode == "bell":
        figures["acked"], figures["acked_wait_s"] = wait_acked([nid], found.received)
    return figures


def daphnes_of(ctx: Context, keys: set[int]) -> list[int]:
    """Return the daphne index of each socket key (as the client pool placed it)."""
    return [ctx.clients.sockets[key].daphne for key in keys if key in ctx.clients.sockets]


def finish(ctx: Context, run: ScenarioRun, scenario_tag: str) -> None:
    """Close the sockets and delete the scenario's notifications (whatever happened)."""
    try:
        ctx.clients.close()
    finally:
        ctx.progress.status("removing the scenario's notifications")
        ctx.population.delete_notifications(scenario_tag)
        errors = ctx.stack.error_lines()
        if errors:
            run.child_errors.extend(errors[:20])
            run.note(f"daphne/listener logged {len(errors)} error line(s); see child_errors")


# ---- P1 -----------------------------------------------------------------------------------


def run_p1(ctx: Context, run: ScenarioRun) -> None:
    """N sockets; single-user notifications at R/s for D s → commit-to-socket percentiles."""
    s = ctx.sizes
    run.params.update(
        {"sockets": s.p1_online, "rate": s.p1_rate, "duration_s": s.p1_duration},
    )
    tag = f"{ctx.population.tag} p1 "
    users = ctx.population.ensure_users(s.p1_online)
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    opened = open_sockets(ctx, users, run)
    try:
        by_user = sockets_by_user(opened)
        online = sorted(by_user)
        for rep in repetitions(ctx, run):
            created = create_single(
                ctx,
                0,
                recipients=online,
                title=f"{tag}r{rep}",
                rate=s.p1_rate,
                duration=s.p1_duration,
                run=run,
            )
            commits = {row.id: row.committed for row in created}
            found = collect(ctx, {row.id: by_user[row.recipient] for row in created}, commits)
            figures: dict[str, Any] = {
                **latency_summary(found.latencies()),
                **found.counts(),
                **call_summary(created),
                "created": len(created),
                "rate": achieved_rate([row.committed for row in created]),
                "setup_rate": opened.rate,
            }
            if ctx.options.client_mode == "bell":
                figures["acked"], figures["acked_wait_s"] = wait_acked(
                    list(commits), found.received
                )
            run.repetitions.append(figures)
    finally:
        finish(ctx, run, tag)


def achieved_rate(times: Sequence[float]) -> float | None:
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else None


# ---- P2 -----------------------------------------------------------------------------------


def run_p2(ctx: Context, run: ScenarioRun) -> None:
    """U users, O online; one broadcast → latency to every socket, rows persisted."""
    s = ctx.sizes
    users = ctx.population.ensure_users(max(s.p2_users, s.p2_online), exact=True)
    audience = ctx.population.audience_size()
    run.params.update(
        {
            "users": len(users),
            "online": s.p2_online,
            "audience": ctx.population.audience,
            "delivery_rows_expected": audience,
        },
    )
    tag = f"{ctx.population.tag} p2 "
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    opened = open_sockets(ctx, users[: s.p2_online], run)
    try:
        for rep in repetitions(ctx, run):
            run.repetitions.append(measure_broadcast(ctx, opened, audience, f"{tag}r{rep}", run))
    finally:
        finish(ctx, run, tag)


# ---- P3 -----------------------------------------------------------------------------------


def progress_counts(base_id: int, prefix: str) -> tuple[int, int]:
    """Return (notifications committed, Delivery rows written) for ids above ``base_id``.

    Single-user notifications: one row each once dispatched, so the difference is the backlog.
    """
    created = Notification.objects.filter(pk__gt=base_id, title__startswith=prefix).count()
    rows = Delivery.objects.filter(
        notification_id__gt=base_id, notification__title__startswith=prefix
    ).count()
    return created, rows


def wait_dispatched(
    base_id: int, prefix: str, total: int, timeout: float = 120.0, interval: float = 0.05
) -> float | None:
    """Poll until ``total`` Delivery rows exist; return the wall time, None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if progress_counts(base_id, prefix)[1] >= total:
            return time.time()
        time.sleep(interval)
    return None


def run_p3(ctx: Context, run: ScenarioRun) -> None:
    """Creators commit one by one as fast as they can → dispatch rate, backlog, capacity."""
    s = ctx.sizes
    creators = max(1, s.p3_creators)
    run.params.update(
        {
            "recipients": s.p3_recipients,
            "creator_processes": creators,
            "flood_s": s.p3_duration,
            "backlog": s.p3_backlog,
        },
    )
    run.note(
        "recipients have no open socket here: this measures the listener (claim, rows, one "
        "group_send each); P1 measures the way to the socket"
    )
    run.note(
        "capacity: the listener is paused (SIGSTOP) while the backlog is committed, then "
        "resumed; after a pause its overdue sweep may take the backlog before its pub/sub "
        "messages do (both go through handle_ids)"
    )
    tag = f"{ctx.population.tag} p3 "
    users = ctx.population.ensure_users(s.p3_recipients)
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    parts = [users[i::creators] for i in range(creators)]
    try:
        for rep in repetitions(ctx, run):
            figures = p3_flood(ctx, run, parts, f"{tag}r{rep}f")
            ctx.stack.settle(timeout=15)
            figures.update(p3_capacity(ctx, run, parts, f"{tag}r{rep}b"))
            run.repetitions.append(figures)
    finally:
        ctx.stack.check()
        finish(ctx, run, tag)


def p3_flood(ctx: Context, run: ScenarioRun, parts: list[list[int]], prefix: str) -> dict[str, Any]:
    duration = ctx.sizes.p3_duration
    base = Notification.objects.aggregate(top=Max("pk"))["top"] or 0
    start_at = time.time() + 0.3
    workers = [ctx.creators.get(i) for i in range(len(parts))]
    for worker, recipients in zip(workers, parts, strict=True):
        worker.send(
            {
                "cmd": "single",
                "recipients": wire_ids(recipients),
                "rate": None,
                "duration": duration,
                "start_at": start_at,
                "title": prefix,
            }
        )
    samples: list[tuple[float, int, int]] = []
    replies: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + duration + 120
    while len(replies) < len(workers):
        if time.monotonic() > deadline:
            raise BenchError("the creators did not finish the flood in time")
        now = time.time()
        created, dispatched = progress_counts(base, prefix)
        samples.append((now, created, dispatched))
        ctx.progress.status(f"flood: {created} committed, {created - dispatched} not dispatched")
        for index, worker in enumerate(workers):
            if index not in replies:
                reply = worker.poll()
                if reply is not None:
                    replies[index] = reply
        time.sleep(max(0.0, 0.1 - (time.time() - now)))
    rows = [row for reply in replies.values() for row in reply["created"]]
    for reply in replies.values():
        if reply.get("errors"):
            run.note(f"a creator failed {reply['errors']} time(s): {reply.get('error')}")
    if len(rows) < 2:
        raise BenchError("the creators committed nothing")
    times = [float(row[2]) for row in rows]
    first, last = min(times), max(times)
    drained_at = wait_dispatched(base, prefix, len(rows), interval=0.02)
    window = [(t - first, c - d) for t, c, d in samples if first <= t <= last]
    offered = achieved_rate(times) or 0.0
    growth = slope(window)
    drain_s = drained_at - last if drained_at else None
    keeps_up = int(drain_s is not None and drain_s <= 1.0 and (growth or 0.0) <= 0.1 * offered)
    return {
        "committed": len(rows),
        "offered_rate": offered,
        "dispatch_rate": len(rows) / (drained_at - first) if drained_at else None,
        "backlog_max": max((c - d for _, c, d in samples), default=0),
        "backlog_slope": growth,
        "drain_s": drain_s,
        "keeps_up": keeps_up,
        "backlog_samples": [[round(t - first, 3), c - d] for t, c, d in samples],
    }


def p3_capacity(
    ctx: Context, run: ScenarioRun, parts: list[list[int]], prefix: str
) -> dict[str, Any]:
    backlog = ctx.sizes.p3_backlog
    base = Notification.objects.aggregate(top=Max("pk"))["top"] or 0
    workers = [ctx.creators.get(i) for i in range(len(parts))]
    share = -(-backlog // len(workers))
    listener_cpu = ctx.stack.cpu("listener")
    ctx.progress.status(f"capacity: committing {backlog} with the listener paused")
    with ctx.stack.listeners_paused():
        for worker, recipients in zip(workers, parts, strict=True):
            worker.send(
                {
                    "cmd": "single",
                    "recipients": wire_ids(recipients),
                    "rate": None,
                    "duration": None,
                    "count": share,
                    "title": prefix,
                }
            )
        total = 0
        for worker in workers:
            total += len(single_reply(ctx, worker, time.monotonic(), None, share, run))
        resumed = time.time()
    ctx.progress.status(f"capacity: the listener drains {total}")
    done_at = wait_dispatched(base, prefix, total, interval=0.02)
    if done_at is None:
        run.note("the listener did not drain the backlog within 120 s")
    ctx.stack.settle(timeout=30)
    used = ctx.stack.cpu("listener") - listener_cpu
    return {
        "backlog": total,
        "capacity": total / (done_at - resumed) if done_at and done_at > resumed else None,
        "listener_cpu_us": used * 1e6 / total if total else None,
    }


# ---- P4 -----------------------------------------------------------------------------------


def run_p4(ctx: Context, run: ScenarioRun) -> None:
    """N idle authenticated sockets into one fresh daphne → RSS per socket, set-up rate."""
    s = ctx.sizes
    run.params.update(
        {"sockets": s.p4_sockets, "concurrency": ctx.options.connect_concurrency},
    )
    run.note("RSS per socket = (daphne VmRSS with all sockets - after 5 warm-up sockets) / N")
    tag = f"{ctx.population.tag} p4 "
    users = ctx.population.ensure_users(s.p4_sockets)
    try:
        for _rep in repetitions(ctx, run):
            ctx.stack.ensure(1, ctx.options.listeners)
            ctx.stack.restart_daphnes()
            daphne = ctx.stack.daphnes[0]
            open_sockets(ctx, users[:5])  # warm-up: imports, caches, pools
            ctx.clients.close()
            ctx.stack.settle()
            rss_before = daphne.rss_kib() or 0
            cpu_before = daphne.cpu()
            opened = open_sockets(ctx, users, run)
            ctx.stack.settle(timeout=15)
            rss_after = daphne.rss_kib() or 0
            cpu_used = daphne.cpu() - cpu_before
            still_open = ctx.clients.open_count()
            count = len(opened.sockets)
            run.repetitions.append(
                {
                    "sockets": still_open,
                    "opened": count,
                    "failed": len(opened.failed),
                    "rss_per_socket_kib": (rss_after - rss_before) / count,
                    "rss_mib": rss_after / 1024,
                    "rss_before_mib": rss_before / 1024,
                    "setup_rate": opened.rate,
                    "setup_p50_ms": percentile(opened.setup_ms, 50),
                    "setup_p99_ms": percentile(opened.setup_ms, 99),
                    "daphne_cpu_ms_per_conn": cpu_used * 1000 / count,
                }
            )
            ctx.clients.close()
    finally:
        finish(ctx, run, tag)


# ---- P5 -----------------------------------------------------------------------------------


def run_p5(ctx: Context, run: ScenarioRun) -> None:
    """P1's load while a broadcast to a big audience is persisted → P1's p99 meanwhile."""
    s = ctx.sizes
    users = ctx.population.ensure_users(max(s.p5_audience, s.p5_online), exact=True)
    audience = ctx.population.audience_size()
    run.params.update(
        {
            "audience": audience,
            "online": s.p5_online,
            "rate": s.p5_rate,
            "duration_s": s.p5_duration,
            "broadcast_at_s": s.p5_broadcast_at,
        },
    )
    run.note(
        "'while the broadcast persists' = P1 notifications whose notify() call started "
        "between the broadcast's commit and the moment all its Delivery rows were visible; "
        "notify() -> socket includes any wait of the save itself (on SQLite the dispatch "
        "transaction holds the database's write lock, so the app's saves wait for it)"
    )
    tag = f"{ctx.population.tag} p5 "
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    opened = open_sockets(ctx, users[: s.p5_online], run)
    try:
        by_user = sockets_by_user(opened)
        online = sorted(by_user)
        all_keys = {socket.key for socket in opened.sockets}
        for rep in repetitions(ctx, run):
            start_at = time.time() + 0.5
            load = ctx.creators.get(0)
            started = time.monotonic()
            load.send(
                {
                    "cmd": "single",
                    "recipients": wire_ids(online),
                    "rate": s.p5_rate,
                    "duration": s.p5_duration,
                    "start_at": start_at,
                    "title": f"{tag}r{rep}s",
                }
            )
            reply = ctx.creators.get(1).request(
                {
                    "cmd": "broadcast",
                    "audience": ctx.population.audience,
                    "group": ctx.population.group_id,
                    "title": f"{tag}r{rep}b",
                    "start_at": start_at + s.p5_broadcast_at,
                },
                s.p5_broadcast_at + 60,
            )
            big, big_at = int(reply["id"]), float(reply["t"])
            ctx.progress.status(f"broadcast to {audience} committed; waiting for its rows")
            persisted_ms, rows = wait_deliveries(big, audience, big_at, timeout=300)
            created = single_reply(ctx, load, started, s.p5_duration, None, run)
            commits = {row.id: row.committed for row in created}
            commits[big] = big_at
            expected = {row.id: by_user[row.recipient] for row in created}
            expected[big] = all_keys
            found = collect(ctx, expected, commits)
            window_end = big_at + persisted_ms / 1000 if persisted_ms else float("inf")
            during = [row for row in created if big_at <= row.called <= window_end]
            during_commit_ms = found.latencies({row.id for row in during})
            during_call_ms = [
                (found.first[(row.id, key)] - row.called) * 1000
                for row in during
                for key in by_user[row.recipient]
                if (row.id, key) in found.first
            ]
            run.repetitions.append(
                {
                    "call_to_socket_p50_during_ms": percentile(during_call_ms, 50),
                    "call_to_socket_p99_during_ms": percentile(during_call_ms, 99),
                    "p50_during_ms": percentile(during_commit_ms, 50),
                    "p99_during_ms": percentile(during_commit_ms, 99),
                    "call_p99_during_ms": percentile([row.call_ms for row in during], 99),
                    "n_during": len(during),
                    **latency_summary(found.latencies({row.id for row in created})),
                    "persisted_ms": persisted_ms,
                    "deliveries": rows,
                    "broadcast_p99_ms": percentile(found.latencies({big}), 99),
                    **found.counts(),
                }
            )
    finally:
        finish(ctx, run, tag)


# ---- peers --------------------------------------------------------------------------------


def run_peers(ctx: Context, run: ScenarioRun) -> None:
    """The same recipients written like django-notifications-hq, its fork, and us."""
    s = ctx.sizes
    users = ctx.population.ensure_users(s.peers_recipients, exact=True)
    recipients = ctx.population.audience_queryset().order_by("pk")
    expected = recipients.count()
    run.params.update(
        {
            "recipients": expected,
            "audience": ctx.population.audience,
            "peer_table": peers.peer_table_name(ctx.population.run_id),
        },
    )
    run.note(
        "peers re-enacted on a real table of django-notifications-hq's shape (ORM save() "
        "per row in autocommit / one bulk_create); neither they nor our Delivery table have "
        "database FK constraints"
    )
    tag = f"{ctx.population.tag} peers "
    model = peers.hq_model(ctx.population.run_id)
    actor = ctx.population.user_model._default_manager.get(pk=users[0])
    p1 = ctx.results.get("p1")
    bell = p1.median("p50_ms") if p1 else None
    if bell is None:
        run.note("bell freshness needs P1 in the same run")
    try:
        for rep in repetitions(ctx, run):
            peers.drop_table(model)
            peers.create_table(model)
            ctx.progress.status(f"one save() per recipient x {expected}")
            hq = peers.time_one_by_one(model, recipients, actor)
            hq_rows = model._default_manager.count()
            peers.drop_table(model)
            peers.create_table(model)
            ctx.progress.status(f"one bulk_create of {expected} wide rows")
            fork = peers.time_bulk(model, recipients, actor)
            fork_rows = model._default_manager.count()
            ctx.progress.status(f"dispatch_notification to {expected}")
            ours, ours_rows = peers.time_ours(
                f"{tag}r{rep}", ctx.population.audience, ctx.population.group_id
            )
            if {hq_rows, fork_rows, ours_rows} != {expected}:
                run.note(
                    f"rows written differ: hq {hq_rows}, fork {fork_rows}, ours "
                    f"{ours_rows}, expected {expected}"
                )
            run.repetitions.append(
                {
                    "hq_s": hq,
                    "fork_s": fork,
                    "ours_s": ours,
                    "hq_ratio": hq / ours if ours else None,
                    "fork_ratio": fork / ours if ours else None,
                    "rows": {"hq": hq_rows, "fork": fork_rows, "ours": ours_rows},
                    "bell_p50_ms": bell,
                    "polling_mean_ms": POLLING_MEAN_MS,
                    "freshness_ratio": POLLING_MEAN_MS / bell if bell else None,
                }
            )
    finally:
        peers.drop_table(model)
        finish(ctx, run, tag)


# ---- scale --------------------------------------------------------------------------------


def run_scale(ctx: Context, run: ScenarioRun) -> None:
    """Two daphnes and two listeners: no duplicates, both reached; P2 with one vs two daphnes."""
    s = ctx.sizes
    daphnes = max(2, ctx.options.daphnes)
    listeners = max(2, ctx.options.listeners)
    users = ctx.population.ensure_users(max(s.scale_users, s.scale_online), exact=True)
    audience = ctx.population.audience_size()
    online_users = users[: s.scale_online]
    run.params.update(
        {
            "users": len(users),
            "online": s.scale_online,
            "daphnes": daphnes,
            "listeners": listeners,
            "rate": s.scale_rate,
            "duration_s": s.scale_duration,
        },
    )
    tag = f"{ctx.population.tag} scale "
    reps = ctx.options.repeat
    one: list[dict[str, Any]] = []
    try:
        ctx.progress.phase("scale: one daphne")
        ctx.stack.ensure(1, listeners)
        opened = open_sockets(ctx, online_users, run)
        for rep in repetitions(ctx, run):
            one.append(measure_broadcast(ctx, opened, audience, f"{tag}1d r{rep}", run))
        ctx.clients.close()
        ctx.progress.phase(f"scale: {daphnes} daphnes")
        ctx.stack.ensure(daphnes, listeners)
        opened = open_sockets(ctx, online_users, run)
        by_user = sockets_by_user(opened)
        for rep in repetitions(ctx, run):
            wide = measure_broadcast(ctx, opened, audience, f"{tag}2d r{rep}b", run)
            created = create_single(
                ctx,
                0,
                recipients=sorted(by_user),
                title=f"{tag}2d r{rep}s",
                rate=s.scale_rate,
                duration=s.scale_duration,
                run=run,
            )
            commits = {row.id: row.committed for row in created}
            found = collect(ctx, {row.id: by_user[row.recipient] for row in created}, commits)
            reached = set(daphnes_of(ctx, found.keys_reached()))
            reached |= {int(d) for d in wide["reached_by_daphne"]}
            first = one[rep - 1] if rep - 1 < len(one) else {}
            run.repetitions.append(
                {
                    "p50_1d_ms": first.get("p50_ms"),
                    "p99_1d_ms": first.get("p99_ms"),
                    "max_1d_ms": first.get("max_ms"),
                    "persisted_1d_ms": first.get("persisted_ms"),
                    "p50_2d_ms": wide["p50_ms"],
                    "p99_2d_ms": wide["p99_ms"],
                    "max_2d_ms": wide["max_ms"],
                    "persisted_2d_ms": wide["persisted_ms"],
                    "daphnes_reached": len(reached),
                    "reached_by_daphne": wide["reached_by_daphne"],
                    "expected": wide["expected"] + found.expected,
                    "received": wide["received"] + found.received,
                    "missing": wide["missing"] + found.missing,
                    "duplicates": wide["duplicates"] + found.duplicates,
                    "row_errors": row_errors(list(commits), 1)
                    + int(wide["deliveries"] != audience),
                    "single_p50_ms": percentile(found.latencies(), 50),
                    "single_p99_ms": percentile(found.latencies(), 99),
                }
            )
        if len(one) < reps:
            run.note("fewer one-daphne repetitions than two-daphne ones")
    finally:
        finish(ctx, run, tag)


def row_errors(ids: Sequence[int], per_notification: int) -> int:
    """Count notifications without exactly ``per_notification`` Delivery rows."""
    wrong = 0
    for start in range(0, len(ids), 900):
        part = list(ids[start : start + 900])
        counts = dict(
            Delivery.objects.filter(notification_id__in=part)
            .values_list("notification_id")
            .annotate(n=Count("pk"))
            .values_list("notification_id", "n")
        )
        wrong += sum(1 for nid in part if counts.get(nid, 0) != per_notification)
    return wrong


RUNNERS: dict[str, Callable[[Context, ScenarioRun], None]] = {
    "p1": run_p1,
    "p2": run_p2,
    "p3": run_p3,
    "p4": run_p4,
    "p5": run_p5,
    "peers": run_peers,
    "scale": run_scale,
}

assert set(RUNNERS) <= set(FIGURES)  # noqa: S101 - a programming error, caught at import
