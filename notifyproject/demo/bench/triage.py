"""The triage scenarios of issue 11: T1 (a verb on one tab, seen on the others) and T2 (snoozes
coming back on time).

T1 times a client frame from the moment the sending tab's process hands it to ``send()``
(``time.time()``) to the moment each of the user's other sockets has the matching state frame;
T2 times a snoozed notification from the snooze's ``until`` to the moment each socket has its
``notification`` frame. Every clock is this machine's; frames are matched per (action, socket)
and missing, duplicate and unexpected ones are counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from notifyproject.demo.bench.pool import Outgoing
from notifyproject.demo.bench.scenarios import (
    SETTLE_SECONDS,
    Context,
    Created,
    ScenarioRun,
    achieved_rate,
    collect,
    create_single,
    finish,
    match,
    open_sockets,
    repetitions,
    sockets_by_user,
)
from notifyproject.demo.bench.stats import latency_summary, percentile
from notifyproject.demo.bench.workers import BenchError

# The state frame each triage verb answers with, on every socket of the user.
ANSWERS = {"archive": "archived", "snooze": "snoozed", "unread": "unread"}
# T1's snoozes must not come back during the run: an hour is past any repetition.
T1_SNOOZE_SECONDS = 3600.0
START_DELAY = 0.5  # from planning the frames to the first one sent
# What daphne logs when a verb's push to the user's group missed its deadline
# (notifications.consumers): the change is recorded, only the sending tab is told.
PUSH_MISSED = "Could not tell the other tabs"


def iso(wall_time: float) -> str:
    """A wall time as the ISO 8601 ``until`` a browser sends (with its offset)."""
    return datetime.fromtimestamp(wall_time, UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Action:
    """One triage frame a user's first tab sends, and the tabs that must hear of it."""

    user: Any
    verb: str
    notification: int
    sender: int  # socket key
    others: frozenset[int]


def notifications_per_user(created: Sequence[Created]) -> dict[Any, list[int]]:
    mine: dict[Any, list[int]] = {}
    for row in sorted(created, key=lambda row: row.id):
        mine.setdefault(row.recipient, []).append(row.id)
    return mine


def deliver_first(
    ctx: Context, run: ScenarioRun, created: Sequence[Created], by_user: dict[Any, set[int]]
) -> None:
    """Wait for the pushes of the scenario's new notifications, so the triage finds them."""
    found = collect(
        ctx,
        {row.id: by_user[row.recipient] for row in created},
        {row.id: row.committed for row in created},
    )
    if found.missing:
        run.note(f"{found.missing} push(es) of the notifications to triage did not arrive")


def send(ctx: Context, outgoing: Sequence[Outgoing]) -> list[float | None]:
    started = time.monotonic()
    last = max(item.at for item in outgoing)

    def tick() -> None:
        ctx.progress.status(
            f"sending {len(outgoing)} frames: {time.monotonic() - started:.0f} s, "
            f"{max(0.0, last - time.time()):.0f} s to go"
        )

    return ctx.clients.send(outgoing, tick=tick)


def daphne_log_count(ctx: Context, text: str) -> int:
    """How many lines of the daphnes' logs contain ``text`` (their whole logs so far)."""
    total = 0
    for child in ctx.stack.daphnes:
        try:
            with open(child.log_path, "rb") as handle:
                total += sum(1 for line in handle if text.encode() in line)
        except OSError:
            continue
    return total


# ---- T1 -----------------------------------------------------------------------------------


def run_t1(ctx: Context, run: ScenarioRun) -> None:
    """Users with 2-3 tabs; archive, snooze, unread on one → time to every other tab."""
    s = ctx.sizes
    users = ctx.population.ensure_users(s.t1_users)
    tabs = {user: 2 + index % 2 for index, user in enumerate(users)}
    run.params.update(
        {
            "users": len(users),
            "sockets": sum(tabs.values()),
            "tabs": "2-3",
            "rate": s.t1_rate,
            "actions_per_user": len(ANSWERS),
        }
    )
    run.note(
        "each user's first socket sends archive (its first notification), snooze (its "
        "second, an hour ahead), then unread (the first again), a round over all users at a "
        "time; every socket of the user gets the answer, the figures are the other tabs'"
    )
    if ctx.options.client_mode == "bell":
        run.note(
            "bell clients: each socket stands for one tab holding its own socket (a browser "
            "without BroadcastChannel, or several browsers of one user); with it, the tabs of "
            "one browser share the leader's socket and follow without the network"
        )
    tag = f"{ctx.population.tag} t1 "
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    opened = open_sockets(ctx, [user for user in users for _ in range(tabs[user])], run)
    try:
        by_user = sockets_by_user(opened)
        online = [user for user in users if len(by_user.get(user, ())) >= 2]
        if not online:
            raise BenchError("no user has two open sockets")
        for rep in repetitions(ctx, run):
            created = create_single(
                ctx,
                0,
                recipients=online,
                title=f"{tag}r{rep}",
                count=2 * len(online),
                run=run,
            )
            deliver_first(ctx, run, created, by_user)
            actions = plan_t1(notifications_per_user(created), by_user)
            missed_before = daphne_log_count(ctx, PUSH_MISSED)
            figures = measure_t1(ctx, actions)
            figures["push_deadline_missed"] = daphne_log_count(ctx, PUSH_MISSED) - missed_before
            if figures["push_deadline_missed"]:
                run.note(
                    "daphne logged verbs whose push to the user's group missed its deadline "
                    "(deadlines.PUSH_SECONDS): only the sending tab was told, the others "
                    "miss that frame"
                )
            run.repetitions.append(figures)
    finally:
        finish(ctx, run, tag)


def plan_t1(mine: dict[Any, list[int]], by_user: dict[Any, set[int]]) -> list[Action]:
    """Round by round over the users: archive the first, snooze the second, unread the first."""
    rounds: list[tuple[str, int]] = [("archive", 0), ("snooze", 1), ("unread", 0)]
    actions = []
    for verb, which in rounds:
        for user, ids in mine.items():
            keys = by_user.get(user, set())
            if len(ids) < 2 or len(keys) < 2:
                continue
            sender = min(keys)
            actions.append(Action(user, verb, ids[which], sender, frozenset(keys - {sender})))
    return actions


def measure_t1(ctx: Context, actions: Sequence[Action]) -> dict[str, Any]:
    rate = ctx.sizes.t1_rate
    start = time.time() + START_DELAY
    outgoing = []
    for index, action in enumerate(actions):
        frame: dict[str, Any] = {"type": action.verb, "ids": [action.notification]}
        if action.verb == "snooze":
            frame["until"] = iso(time.time() + T1_SNOOZE_SECONDS)
        outgoing.append(Outgoing(action.sender, start + index / rate, frame))
    sent = send(ctx, outgoing)
    answers: Counter[int] = Counter()
    for action in actions:
        answers.update(action.others | {action.sender})
    ctx.progress.status("collecting frames")
    collected = ctx.clients.collect(
        Counter(),
        timeout=ctx.sizes.collect_timeout,
        settle=SETTLE_SECONDS,
        expected_events=answers,
    )
    # Which action a frame answers: the socket's user, the frame's type, the notification.
    wanted: dict[tuple[Any, str, int], int] = {}
    for index, action in enumerate(actions):
        wanted[(action.user, ANSWERS[action.verb], action.notification)] = index
    first: dict[tuple[int, int], float] = {}
    duplicates = unexpected = 0
    for key, kind, ids, at in sorted(collected.events, key=lambda event: event[3]):
        socket = ctx.clients.sockets.get(key)
        for nid in ids:
            index = wanted.get((socket.user_id if socket else None, kind, nid))
            if index is None:
                unexpected += 1
            elif (index, key) in first:
                duplicates += 1
            else:
                first[(index, key)] = at
    other: list[float] = []
    echo: list[float] = []
    by_verb: dict[str, list[float]] = {verb: [] for verb in ANSWERS}
    expected = 0
    for index, action in enumerate(actions):
        went = sent[index]
        expected += len(action.others)
        if went is None:
            continue
        if (index, action.sender) in first:
            echo.append((first[(index, action.sender)] - went) * 1000)
        for key in action.others:
            if (index, key) in first:
                latency = (first[(index, key)] - went) * 1000
                other.append(latency)
                by_verb[action.verb].append(latency)
    went_at = [at for at in sent if at is not None]
    return {
        **latency_summary(other),
        **{f"{verb}_p99_ms": percentile(values, 99) for verb, values in by_verb.items()},
        "echo_p50_ms": percentile(echo, 50),
        "echo_p99_ms": percentile(echo, 99),
        "actions": len(actions),
        "sent": len(went_at),
        "expected": expected,
        "received": len(other),
        "missing": expected - len(other),
        "duplicates": duplicates,
        "unexpected": unexpected,
        "rate": achieved_rate(went_at),
        "frames": dict(sorted(collected.frames.items())),
        "closed_by_server": len(collected.closed),
    }


# ---- T2 -----------------------------------------------------------------------------------


def run_t2(ctx: Context, run: ScenarioRun) -> None:
    """Users snooze a notification: half until one moment, half over a spread → lateness."""
    s = ctx.sizes
    users = ctx.population.ensure_users(s.t2_users)
    run.params.update(
        {
            "users": len(users),
            "sockets": len(users),
            "lead_s": s.t2_lead,
            "spread_s": s.t2_spread,
            "send_rate": s.t2_send_rate,
        }
    )
    run.note(
        "each user's socket snoozes its notification (a snooze frame with an ISO until); "
        "even users until one shared moment, odd ones evenly over the spread after it; "
        "lateness = arrival of the notification frame - until"
    )
    tag = f"{ctx.population.tag} t2 "
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    opened = open_sockets(ctx, users, run)
    try:
        by_user = sockets_by_user(opened)
        online = [user for user in users if user in by_user]
        for rep in repetitions(ctx, run):
            created = create_single(
                ctx, 0, recipients=online, title=f"{tag}r{rep}", count=len(online), run=run
            )
            deliver_first(ctx, run, created, by_user)
            run.repetitions.append(measure_t2(ctx, notifications_per_user(created), by_user))
    finally:
        finish(ctx, run, tag)


def measure_t2(
    ctx: Context, mine: dict[Any, list[int]], by_user: dict[Any, set[int]]
) -> dict[str, Any]:
    s = ctx.sizes
    chosen = [(user, ids[0]) for user, ids in mine.items() if ids and by_user.get(user)]
    start = time.time() + START_DELAY
    moment = start + len(chosen) / s.t2_send_rate + s.t2_lead
    spread = [i for i in range(len(chosen)) if i % 2]
    until: dict[int, float] = {}
    same: set[int] = set()
    outgoing = []
    for index, (user, nid) in enumerate(chosen):
        if index % 2:
            step = spread.index(index) / max(1, len(spread) - 1)
            until[nid] = moment + s.t2_spread * step
        else:
            until[nid] = moment
            same.add(nid)
        frame = {"type": "snooze", "ids": [nid], "until": iso(until[nid])}
        outgoing.append(Outgoing(min(by_user[user]), start + index / s.t2_send_rate, frame))
    # The ISO text is what the server reads: time from it, to the microsecond it carries.
    until = {nid: datetime.fromisoformat(iso(at)).timestamp() for nid, at in until.items()}
    sent = send(ctx, outgoing)
    expected = {nid: by_user[user] for user, nid in chosen}
    snoozes: Counter[int] = Counter(min(by_user[user]) for user, _ in chosen)
    wait = max(until.values()) - time.time() + s.collect_timeout
    ctx.progress.status("waiting for the snoozes to come back")
    per_socket: Counter[int] = Counter()
    for keys in expected.values():
        per_socket.update(keys)
    collected = ctx.clients.collect(
        per_socket, timeout=max(wait, 1.0), settle=SETTLE_SECONDS, expected_events=snoozes
    )
    found = match(expected, until, collected.arrivals)
    found.frames = dict(collected.frames)
    found.closed = collected.closed
    late = found.latencies()
    snoozed, answered = snooze_answers(chosen, by_user, sent, collected.events)
    # A snooze answered after its until was recorded late (the verb's path, not the return):
    # from the later of the two, the lateness is the listener's and the push's alone.
    recorded = {nid: max(until[nid], answered.get(nid, until[nid])) for nid in until}
    after_recorded = [(at - recorded[nid]) * 1000 for (nid, _key), at in found.first.items()]
    return {
        **latency_summary(late),
        "recorded_late": sum(1 for nid in until if answered.get(nid, 0.0) > until[nid]),
        "after_recorded_p99_ms": percentile(after_recorded, 99),
        "after_recorded_max_ms": max(after_recorded, default=None),
        "same_max_ms": max(found.latencies(same), default=None),
        "spread_max_ms": max(found.latencies(set(until) - same), default=None),
        "early": sum(1 for value in late if value < 0),
        "snoozed_p50_ms": percentile(snoozed, 50),
        "snoozed_p99_ms": percentile(snoozed, 99),
        "sent": sum(1 for at in sent if at is not None),
        **found.counts(),
        # [due after the shared moment (s), lateness (ms)] per socket, in order of due time.
        "lateness_samples": sorted(
            [round(until[nid] - moment, 3), round((at - until[nid]) * 1000, 1)]
            for (nid, _key), at in found.first.items()
        ),
    }


def snooze_answers(
    chosen: Sequence[tuple[Any, int]],
    by_user: dict[Any, set[int]],
    sent: Sequence[float | None],
    events: Sequence[tuple[int, str, list[int], float]],
) -> tuple[list[float], dict[int, float]]:
    """Milliseconds from each snooze frame to its ``snoozed`` answer on the same socket, and
    when each notification's answer came."""
    first: dict[tuple[int, int], float] = {}
    for key, kind, ids, at in events:
        if kind == "snoozed":
            for nid in ids:
                first.setdefault((key, nid), at)
    answers = []
    answered: dict[int, float] = {}
    for (user, nid), went in zip(chosen, sent, strict=True):
        at = first.get((min(by_user[user]), nid))
        if at is not None:
            answered[nid] = at
        if went is not None and at is not None:
            answers.append((at - went) * 1000)
    return answers, answered


RUNNERS: dict[str, Callable[[Context, ScenarioRun], None]] = {"t1": run_t1, "t2": run_t2}
