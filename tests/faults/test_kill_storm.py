"""Kill storm: 2,000 notifications at a steady rate while the stack is knocked over.

200 users, 20 live bell clients (20 users, over two daphne processes) and 4 real Chromium
pages running bell.js (3 of those users, one of them in a tab on each daphne), notifications
created at ~100/s — mostly to one user each, some to a group, to all staff and to everyone —
while the listener is SIGKILLed twice (and restarted) and Redis is restarted once. After
recovery the database holds exactly the expected Delivery rows, each notification was
dispatched once, every client holds exactly its user's notifications (pushes plus syncs), no
push twice, and every page holds exactly its user's set, with the badge at the database's
unread count and the dropdown listing the newest ten.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Count, Max
from playwright.sync_api import Browser

from notifications.models import Delivery, Notification
from notifications.selectors import unread_count
from tests.faults.browser_pages import BellPage, mismatches, open_page, start_bell_daphne
from tests.faults.conftest import (
    FAULT_TEST,
    Creator,
    Spec,
    Stack,
    delivered_ids,
    make_users,
    undispatched,
    wait_until,
)
from tests.processes import ROOT

pytestmark = FAULT_TEST

USERS = 200
CLIENTS = 20
NOTIFICATIONS = 2000
RATE = 100.0  # notifications per second
SEED = 20240
ARTIFACTS = ROOT / "test-artifacts"  # the figures, kept for the README (git-ignored)

# Faults, at these counts of notifications created so far.
FIRST_KILL = 400
REDIS_RESTART = 900
SECOND_KILL = 1400

# Real pages: (index into the clients' users, daphne). The first user has a tab on each
# daphne; the third is staff and in the group. (Each page costs the storm CPU: four is enough.)
PAGES = [(0, 0), (0, 1), (1, 1), (15, 0)]
PAGE_PING = 1.0  # the pages' BELL_PING_INTERVAL: a dropped push shows within about a second


@pytest.mark.timeout(300)
def newest_arrivals(user, count: int) -> list[int]:
    """The ids of the user's ``count`` latest notifications by arrival, newest first."""
    return list(
        Notification.objects.filter(deliveries__user=user)
        .order_by("-dispatched_at", "-id")
        .values_list("id", flat=True)[:count]
    )


def test_kill_storm(
    stack: Stack, run_creator: Callable[..., Creator], browser: Browser, pages: list[BellPage]
) -> None:
    users = make_users(USERS, "storm")
    user_ids = [u.pk for u in users]
    clients_users = users[:CLIENTS]
    staff_ids = set(user_ids[10:30])
    group_ids = set(user_ids[15:55])  # overlaps the clients and the staff on purpose
    type(users[0]).objects.filter(pk__in=staff_ids).update(is_staff=True)
    team = Group.objects.create(name="storm-team")
    team.user_set.add(*group_ids)

    # The plan: mostly one user each (half of them to a user with a live client), and one in
    # a hundred to each of everyone, the group, and all staff.
    rng = random.Random(SEED)
    plan: list[Spec] = []
    audiences: list[set[int]] = []
    for i in range(NOTIFICATIONS):
        if i % 100 == 37:
            plan.append(Spec("all", None, f"storm {i} to everyone"))
            audiences.append(set(user_ids))
        elif i % 100 == 71:
            plan.append(Spec("group", team.pk, f"storm {i} to the team"))
            audiences.append(group_ids)
        elif i % 100 == 89:
            plan.append(Spec("staff", None, f"storm {i} to staff"))
            audiences.append(staff_ids)
        else:
            user = rng.choice(clients_users if rng.random() < 0.5 else users)
            plan.append(Spec("user", user.pk, f"storm {i} to {user.username}"))
            audiences.append({user.pk})

    # The daphnes serve the pages too: their bells ping every PAGE_PING seconds.
    daphnes = [start_bell_daphne(stack, ping=PAGE_PING) for _ in range(2)]
    stack.start_listener()
    # Clients ping as often as the pages: while rows are younger than SYNC_SETTLE_SECONDS
    # every pong re-reads them (bell.js does too), so a faster ping is only load.
    clients = [
        stack.bell(user, daphnes[index % len(daphnes)], ping_interval=PAGE_PING)
        for index, user in enumerate(clients_users)
    ]
    for user_index, daphne_index in PAGES:
        pages.append(open_page(browser, daphnes[daphne_index], clients_users[user_index]))

    creator = run_creator(plan, RATE)
    faults: list[str] = []

    def backlog_cleared(since: float) -> float:
        """Seconds from ``since`` until everything saved so far is dispatched."""
        ceiling = Notification.objects.aggregate(last=Max("id"))["last"]
        wait_until(
            lambda: not Notification.objects.due().filter(id__lte=ceiling).exists(),
            30,
            "the backlog after a fault",
        )
        return time.monotonic() - since

    def kill_and_restart_listener() -> None:
        at = creator.count()
        stack.kill(stack.listeners[-1])
        killed = time.monotonic()
        stack.start_listener()
        subscribed = time.monotonic() - killed
        faults.append(
            f"SIGKILL listener at #{at}: successor subscribed {subscribed:.2f} s later, "
            f"backlog dispatched {backlog_cleared(killed):.2f} s after the kill"
        )

    creator.wait_for(FIRST_KILL, 60)
    kill_and_restart_listener()

    creator.wait_for(REDIS_RESTART, 60)
    at = creator.count()
    listener = stack.listeners[-1]
    mark = len(listener.lines)
    stack.redis.restart(down_for=1.0)
    back = time.monotonic()
    listener.wait_for_line("Subscribed to", timeout=20, start=mark)
    resubscribed = time.monotonic() - back
    faults.append(
        f"Redis down 1 s at #{at}: listener resubscribed {resubscribed:.2f} s after it "
        f"returned, backlog dispatched {backlog_cleared(back):.2f} s after it returned"
    )

    creator.wait_for(SECOND_KILL, 60)
    kill_and_restart_listener()

    created = creator.finish(timeout=90)
    finished = time.monotonic()
    assert len(created) == NOTIFICATIONS

    # Recovery: the database first, then every client.
    dispatched_in = wait_until(
        lambda: undispatched() == 0, 30, lambda: f"{undispatched()} still undispatched"
    )
    by_user = {}

    def clients_caught_up() -> bool:
        by_user.clear()
        by_user.update({u.pk: delivered_ids(u) for u in clients_users})
        return all(c.ids() == by_user[u.pk] for c, u in zip(clients, clients_users, strict=True))

    def lagging() -> str:
        return "; ".join(
            f"{c.name}: missing {sorted(by_user[u.pk] - c.ids())[:10]} "
            f"extra {sorted(c.ids() - by_user[u.pk])[:10]}"
            for c, u in zip(clients, clients_users, strict=True)
            if c.ids() != by_user[u.pk]
        )

    wait_until(clients_caught_up, 30, lagging, interval=0.2)
    recovered_in = time.monotonic() - finished
    # The real bells: each page's set is its user's, whichever daphne it is on.
    wait_until(lambda: not mismatches(pages, by_user), 30, lambda: mismatches(pages, by_user))
    pages_recovered_in = time.monotonic() - finished
    wait_until(
        lambda: all(page.badge() == unread_count(page.user) for page in pages),
        15,
        lambda: "; ".join(f"{p.name}: badge {p.badge()}, db {unread_count(p.user)}" for p in pages),
    )
    page_figures = [(page.name, page.figures(), page.listed()) for page in pages]
    snapshots = [c.snapshot() for c in clients]
    stack.loop.stop_clients()

    # ---- the database --------------------------------------------------------------------
    expected = {
        (nid, uid) for nid, audience in zip(created, audiences, strict=True) for uid in audience
    }
    actual = set(Delivery.objects.values_list("notification_id", "user_id"))
    rows = Delivery.objects.count()
    duplicate_rows = (
        Delivery.objects.values("notification_id", "user_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    counts = dict(Notification.objects.values_list("id", "recipient_count"))
    wrong_counts = [
        nid
        for nid, audience in zip(created, audiences, strict=True)
        if counts[nid] != len(audience)
    ]
    dispatches = stack.dispatch_counts()
    logged_twice = sorted(nid for nid, n in dispatches.items() if n > 1)
    unlogged = sorted(set(created) - set(dispatches))  # killed between commit and log line

    # ---- the figures ---------------------------------------------------------------------
    figures = [
        f"kill storm on {connection.vendor}",
        *(f"  fault: {fault}" for fault in faults),
        f"  created               {len(created)} notifications at {creator.achieved_rate:.0f}/s",
        f"  users / clients       {USERS} / {CLIENTS} (on {len(daphnes)} daphne processes)",
        f"  expected deliveries   {len(expected)}",
        f"  actual deliveries     {rows} ({len(actual & expected)} of the expected pairs)",
        f"  duplicate rows        {duplicate_rows}",
        f"  wrong recipient_count {len(wrong_counts)}",
        f"  dispatched twice      {len(logged_twice)} (log lines over all listeners)",
        f"  dispatch not logged   {len(unlogged)} (a listener died between commit and log)",
        f"  listeners started     {len(stack.listeners)}",
        f"  backlog cleared in    {dispatched_in:.2f} s after the last create",
        f"  recovered in          {recovered_in:.2f} s after the last create (db + clients)",
        f"  pages recovered in    {pages_recovered_in:.2f} s after the last create",
        "  client                 ids  pushes  synced  push-only  sync-only  gap-syncs  dup"
        "  reconnects",
    ]
    figures += [
        f"  {snap.name:<22} {len(snap.ids):>4} {len(snap.pushes):>7} {len(set(snap.synced)):>7}"
        f" {len(snap.push_only):>10} {len(snap.sync_only):>10} {snap.gap_syncs:>10}"
        f" {snap.duplicate_pushes:>4} {snap.connects - 1:>11}"
        for snap in snapshots
    ]
    figures.append(
        f"  all clients: {sum(len(s.ids) for s in snapshots)} notifications, "
        f"{sum(len(s.pushes) for s in snapshots)} pushes, "
        f"{sum(len(s.sync_only) for s in snapshots)} recovered by sync, "
        f"{sum(s.duplicate_pushes for s in snapshots)} duplicate pushes"
    )
    figures.append(
        "  page (bell.js in Chromium)        ids  pushed  recovered-by-sync  gap-syncs  dup"
    )
    figures += [
        f"  {name:<32} {f['ids']:>4} {f['pushed']:>7} {f['recovered']:>18} {f['gap_syncs']:>10}"
        f" {f['duplicate_pushes']:>4}"
        for name, f, _ in page_figures
    ]
    figures.append(
        f"  all pages: {len(pages)} pages, {sum(f['ids'] for _, f, _ in page_figures)} "
        f"notifications, {sum(f['pushed'] for _, f, _ in page_figures)} pushed, "
        f"{sum(f['recovered'] for _, f, _ in page_figures)} recovered by sync"
    )
    report = "\n".join(figures)
    print(f"\n{report}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"kill-storm-{connection.vendor}.txt").write_text(report + "\n")

    # ---- the pass conditions -------------------------------------------------------------
    assert actual == expected, (
        f"missing {sorted(expected - actual)[:20]}, unexpected {sorted(actual - expected)[:20]}"
    )
    assert rows == len(expected)
    assert duplicate_rows == 0
    assert not wrong_counts, wrong_counts[:20]
    assert not logged_twice, logged_twice[:20]
    assert not Notification.objects.filter(dispatched_at__isnull=True).exists()
    for snap, user in zip(snapshots, clients_users, strict=True):
        assert snap.ids == by_user[user.pk], snap.name
        assert snap.duplicate_pushes == 0, snap.name
        assert not snap.errors, (snap.name, snap.errors)
    for page, (name, _, listed) in zip(pages, page_figures, strict=True):
        assert page.ids() == by_user[page.user.pk], name
        # The page hook of DESIGN.md agrees: the dropdown lists the ten newest arrivals
        # (dispatch time, then id, as the bell orders them), once each.
        assert listed == newest_arrivals(page.user, 10), name
    assert not stack.loop.failures()
