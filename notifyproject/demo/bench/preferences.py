"""Issue 12's scenarios: M2 (P2 with category mutes) and R1 (a broadcast recalled).

M2 is P2 where every n-th user of the whole population (10%: so of the online ones too) has
muted the broadcast's category with a ``CategoryPreference(bell=False)`` row, written before
the sockets open (a socket reads its mutes at connect). The figures are P2's for the sockets
that did not mute, plus the frames the muted ones got anyway (counted after a settle period
past the last expected frame), and a check that the Delivery rows are the audience minus the
muted, none of them a muted user's.

R1 broadcasts to the population, waits until every open socket has it and its rows are
recorded, then ``recall()`` s it in a creator process (its own transaction, stamped at
commit as every creation is) and times each socket's ``recalled`` frame from that commit.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from notifications.models import Delivery, Notification
from notifyproject.demo.bench.population import chunks
from notifyproject.demo.bench.scenarios import (
    SETTLE_SECONDS,
    Context,
    ScenarioRun,
    broadcast,
    collect,
    finish,
    match,
    open_sockets,
    repetitions,
    wait_acked,
    wait_deliveries,
)
from notifyproject.demo.bench.stats import latency_summary, percentile
from notifyproject.demo.bench.workers import BenchError

# The category M2's users mute and its broadcast is sent in: a default-on, mutable one of
# the demo and test settings.
MUTED_CATEGORY = "mentions"


def wait_recorded(
    notification_id: int, committed_at: float, timeout: float = 120.0
) -> float | None:
    """Poll (every 10 ms) until the broadcast's recording is done (``recorded_at`` set, in
    the transaction after its last rows); return the milliseconds after the commit."""
    recorded = Notification.objects.filter(pk=notification_id, recorded_at__isnull=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if recorded.exists():
            return (time.time() - committed_at) * 1000
        time.sleep(0.01)
    return None


def count_rows_of(notification_id: int, user_ids: Sequence[Any]) -> int:
    rows = Delivery.objects.filter(notification_id=notification_id)
    return sum(rows.filter(user_id__in=part).count() for part in chunks(list(user_ids)))


# ---- M2 -----------------------------------------------------------------------------------


def run_m2(ctx: Context, run: ScenarioRun) -> None:
    """P2 with 10% of all users muting the broadcast's category."""
    s = ctx.sizes
    users = ctx.population.ensure_users(max(s.m2_users, s.m2_online), exact=True)
    audience = ctx.population.audience_size()
    muted = users[:: s.m2_muted_every]
    tag = f"{ctx.population.tag} m2 "
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    try:
        ctx.population.mute(muted, MUTED_CATEGORY)
        # Opened after the mutes: a socket reads its user's muted categories at connect.
        opened = open_sockets(ctx, users[: s.m2_online], run)
        muted_ids = set(muted)
        muted_keys = {socket.key for socket in opened.sockets if socket.user_id in muted_ids}
        keys = {socket.key for socket in opened.sockets} - muted_keys
        run.params.update(
            {
                "users": len(users),
                "online": s.m2_online,
                "muted_users": len(muted),
                "muted_online": len(muted_keys),
                "category": MUTED_CATEGORY,
                "audience": ctx.population.audience,
                "settle_s": s.m2_settle,
            }
        )
        run.note(
            f"every {s.m2_muted_every}th user of all mutes {MUTED_CATEGORY!r} (a "
            "CategoryPreference with bell=False, written before the sockets open); one "
            f"broadcast with category={MUTED_CATEGORY!r}; frames to muted sockets are counted "
            f"{s.m2_settle:g} s after the last expected one; 'recorded' = recorded_at seen set "
            "(the recorder's last transaction, after all rows), polled every 10 ms"
        )
        for rep in repetitions(ctx, run):
            run.repetitions.append(
                measure_m2(ctx, run, f"{tag}r{rep}", keys, muted_keys, muted, audience)
            )
    finally:
        try:
            finish(ctx, run, tag)
        finally:
            ctx.population.unmute(muted)


def measure_m2(
    ctx: Context,
    run: ScenarioRun,
    title: str,
    keys: set[int],
    muted_keys: set[int],
    muted: Sequence[Any],
    audience: int,
) -> dict[str, Any]:
    s = ctx.sizes
    expected_rows = audience - len(muted)
    daphne_cpu, listener_cpu = ctx.stack.cpu("daphne"), ctx.stack.cpu("listener")
    nid, committed_at = broadcast(ctx, 0, title, category=MUTED_CATEGORY)
    visible_ms, _ = wait_deliveries(nid, expected_rows, committed_at)
    persisted_ms = wait_recorded(nid, committed_at)
    if persisted_ms is None:
        run.note("the broadcast's recording did not finish within the wait")
    ctx.progress.status("collecting frames")
    collected = ctx.clients.collect(
        Counter(dict.fromkeys(keys, 1)), timeout=s.collect_timeout, settle=s.m2_settle
    )
    to_muted = [a for a in collected.arrivals if a[0] in muted_keys]
    found = match(
        {nid: keys}, {nid: committed_at}, [a for a in collected.arrivals if a[0] not in muted_keys]
    )
    found.frames = dict(collected.frames)
    found.closed = collected.closed
    daphne_used = ctx.stack.cpu("daphne") - daphne_cpu
    # Counted after the settle period: a row written late would show as a difference.
    rows = Delivery.objects.filter(notification_id=nid).count()
    row = Notification.objects.values("muted_count", "recipient_count").get(pk=nid)
    figures: dict[str, Any] = {
        **latency_summary(found.latencies()),
        **found.counts(),
        "muted_sockets": len(muted_keys),
        "muted_frames": sum(1 for _key, i, _at in to_muted if i == nid),
        "muted_frames_other": sum(1 for _key, i, _at in to_muted if i != nid),
        "persisted_ms": persisted_ms,
        "rows_visible_ms": visible_ms,
        "deliveries": rows,
        "deliveries_expected": expected_rows,
        "row_errors": abs(rows - expected_rows),
        "muted_rows": count_rows_of(nid, muted),
        "muted_count": row["muted_count"],
        "recipient_count": row["recipient_count"],
        "audience": audience,
        "daphne_cpu_us_per_socket": daphne_used * 1e6 / max(1, len(keys) + len(muted_keys)),
        "listener_cpu_ms": (ctx.stack.cpu("listener") - listener_cpu) * 1000,
    }
    if ctx.options.client_mode == "bell":
        figures["acked"], figures["acked_wait_s"] = wait_acked([nid], found.received)
    return figures


# ---- R1 -----------------------------------------------------------------------------------


def run_r1(ctx: Context, run: ScenarioRun) -> None:
    """A broadcast every open socket has, recalled → its recalled frame at every socket."""
    s = ctx.sizes
    users = ctx.population.ensure_users(max(s.r1_users, s.r1_online), exact=True)
    audience = ctx.population.audience_size()
    run.params.update(
        {
            "users": len(users),
            "online": s.r1_online,
            "audience": ctx.population.audience,
            "timeout_s": s.collect_timeout,
        }
    )
    run.note(
        "a broadcast to all, pushed to every socket and recorded; then recall() in a creator "
        "process, its own transaction; latency = recalled frame at the socket - the recall's "
        "commit; 'missing' = sockets without it within the timeout"
    )
    tag = f"{ctx.population.tag} r1 "
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    opened = open_sockets(ctx, users[: s.r1_online], run)
    try:
        keys = {socket.key for socket in opened.sockets}
        for rep in repetitions(ctx, run):
            run.repetitions.append(measure_r1(ctx, run, f"{tag}r{rep}", keys, audience))
    finally:
        finish(ctx, run, tag)


def measure_r1(
    ctx: Context, run: ScenarioRun, title: str, keys: set[int], audience: int
) -> dict[str, Any]:
    s = ctx.sizes
    nid, committed_at = broadcast(ctx, 0, title)
    wait_deliveries(nid, audience, committed_at)
    if wait_recorded(nid, committed_at) is None:
        run.note("the broadcast's recording did not finish within the wait")
    first = collect(ctx, {nid: keys}, {nid: committed_at})
    if first.missing:
        run.note(f"{first.missing} socket(s) missed the broadcast before its recall")
    if ctx.options.client_mode == "bell":
        wait_acked([nid], first.received)
    ctx.stack.settle()  # the broadcast's acks, seen marks and syncs done
    daphne_cpu = ctx.stack.cpu("daphne")
    reply = ctx.creators.get(0).request({"cmd": "recall", "id": nid}, 60)
    if reply.get("error"):
        raise BenchError(f"recall failed in the creator: {reply['error']}")
    if not reply.get("recalled"):
        run.note("recall() said the notification was recalled already")
    recalled_at = float(reply["t"])
    ctx.progress.status("collecting recalled frames")
    collected = ctx.clients.collect(
        Counter(),
        timeout=s.collect_timeout,
        settle=SETTLE_SECONDS,
        expected_events=Counter(dict.fromkeys(keys, 1)),
    )
    reached: dict[int, float] = {}
    duplicates = unexpected = 0
    for key, at in collected.arrivals_of("recalled", nid):
        if key not in keys:
            unexpected += 1
        elif key in reached:
            duplicates += 1
        else:
            reached[key] = at
    latencies = [(at - recalled_at) * 1000 for at in reached.values()]
    stored = Notification.objects.values_list("recalled_at", flat=True).get(pk=nid)
    if stored is None:
        run.note("the notification has no recalled_at after recall()")
    return {
        **latency_summary(latencies),
        "expected": len(keys),
        "received": len(reached),
        "missing": len(keys) - len(reached),
        "duplicates": duplicates,
        "unexpected": unexpected,
        "call_ms": (float(reply["returned"]) - float(reply["called"])) * 1000,
        "daphne_cpu_us_per_socket": (ctx.stack.cpu("daphne") - daphne_cpu) * 1e6 / len(keys),
        "broadcast_p50_ms": percentile(first.latencies(), 50),
        "broadcast_p99_ms": percentile(first.latencies(), 99),
        "broadcast_missing": first.missing,
        "frames": dict(sorted(collected.frames.items())),
        "closed_by_server": len(collected.closed),
    }


RUNNERS: dict[str, Callable[[Context, ScenarioRun], None]] = {"m2": run_m2, "r1": run_r1}
