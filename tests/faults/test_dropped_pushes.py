"""Dropped pushes: a burst larger than the channel layer's capacity, to one user with 5 tabs.

The listener and daphne run with a channel capacity of 20 (tests/faults/small_capacity_settings),
so channels-redis drops most of the burst's pushes without a word. Each tab — three Python
clients and two real Chromium pages running bell.js — must notice the gap (``pong.last_id``
past its cursor), ``sync``, and end up showing every notification exactly once, with the badge
equal to the database's unread count. The burst is longer than MAX_SYNC and all of it is
younger than SYNC_SETTLE_SECONDS, so the server's cursor stays put: a tab must page through it
from the end of each full answer.
"""

from __future__ import annotations

import time

from django.db import transaction
from playwright.sync_api import Browser

from notifications.selectors import unread_count
from notifications.services import notify
from tests.faults.browser_pages import BellPage, mismatches, open_page, start_bell_daphne
from tests.faults.conftest import (
    FAULT_TEST,
    SMALL_CAPACITY_SETTINGS,
    Stack,
    delivered_ids,
    make_users,
    undispatched,
    wait_until,
)

pytestmark = FAULT_TEST

TABS = 3
BURST = 300  # well over the capacity of 20, and over MAX_SYNC (200): the tabs page through it
READ = 40
PAGES = 2
# Every tab and page shows the whole burst within this many seconds of its dispatch: well
# under SYNC_SETTLE_SECONDS (30 s), so a tab that pages only once the rows have settled fails.
RECOVERY = 12.0
PAGE_PING = 1.0  # the pages' BELL_PING_INTERVAL


def test_every_tab_recovers_a_burst_the_channel_layer_dropped(
    stack: Stack, browser: Browser, pages: list[BellPage]
) -> None:
    user, bystander = make_users(2, "burst")
    daphne = start_bell_daphne(stack, ping=PAGE_PING, base=SMALL_CAPACITY_SETTINGS)
    stack.start_listener(settings_module=SMALL_CAPACITY_SETTINGS)
    tabs = [stack.bell(user, daphne, name=f"tab{i}", ping_interval=0.5) for i in range(TABS)]
    other = stack.bell(bystander, daphne, name="bystander", ping_interval=0.5)
    pages.extend(open_page(browser, daphne, user, f"page{i}") for i in range(PAGES))
    bystander_page = open_page(browser, daphne, bystander, "bystander page")
    pages.append(bystander_page)
    user_pages = pages[:PAGES]

    # One transaction: all of it commits at once, 300 PUBLISHes follow in a row, and the
    # listener pushes them as fast as it can to the user's group of three sockets.
    with transaction.atomic():
        created = [notify(user, f"burst {i}").pk for i in range(BURST)]
    wait_until(lambda: undispatched() == 0, 30, lambda: f"{undispatched()} undispatched")
    dispatched = time.monotonic()

    def left() -> float:
        return max(0.5, RECOVERY - (time.monotonic() - dispatched))

    expected = delivered_ids(user)
    assert expected == set(created)

    def caught_up() -> bool:
        return all(tab.ids() == expected for tab in tabs)

    wait_until(
        caught_up,
        left(),
        lambda: "; ".join(f"{t.name} has {len(t.ids())} of {len(expected)}" for t in tabs),
        interval=0.1,
    )
    snapshots = [tab.snapshot() for tab in tabs]
    # The real bells: the same set, the badge at the database's count, the newest ten listed.
    by_user = {user.pk: expected, bystander.pk: set()}
    wait_until(
        lambda: not mismatches(pages, by_user), left(), lambda: mismatches(pages, by_user), 0.2
    )
    recovered_in = time.monotonic() - dispatched
    wait_until(
        lambda: all(page.badge() == BURST for page in user_pages),
        10,
        lambda: f"badges {[page.badge() for page in user_pages]}, db {unread_count(user)}",
    )
    page_figures = [page.figures() for page in user_pages]
    print()
    print(
        f"burst of {BURST} to one user, {TABS} tabs + {PAGES} pages, channel capacity 20:"
        f" every tab and page complete {recovered_in:.2f} s after the dispatch"
    )
    for snap in snapshots:
        print(
            f"  {snap.name}: {len(snap.pushes)} pushed, {len(snap.sync_only)} recovered by sync"
            f" ({snap.gap_syncs} gap syncs), {snap.duplicate_pushes} duplicate pushes"
        )
    for page, figures in zip(user_pages, page_figures, strict=True):
        print(
            f"  {page.name} (bell.js): {figures['pushed']} pushed, {figures['recovered']}"
            f" recovered by sync ({figures['gap_syncs']} gap syncs),"
            f" {figures['duplicate_pushes']} duplicate pushes"
        )
    dropped = sum(len(snap.sync_only) for snap in snapshots)
    assert dropped > 0, "the burst never overflowed the channel: this test proves nothing"
    assert all(figures["recovered"] > 0 for figures in page_figures), (
        f"a page lost no push: it proves nothing about bell.js's recovery ({page_figures})"
    )
    for page in user_pages:
        assert page.ids() == expected, page.name
        assert page.listed() == sorted(expected, reverse=True)[:10], page.name
    for snap in snapshots:
        assert snap.duplicate_pushes == 0, snap.name
        assert len(snap.pushes) == len(set(snap.pushes)), snap.name
        assert snap.ids == expected, snap.name
        assert snap.unread == unread_count(user) == BURST, snap.name
        assert not snap.errors, (snap.name, snap.errors)
        assert snap.connects == 1, f"{snap.name} was disconnected: {snap.close_codes}"
    assert other.ids() == set(), "another user's socket saw the burst"

    # A read in one tab reaches the others (no longer over capacity): every badge follows.
    stack.loop.call(tabs[0].read(sorted(expected)[:READ]))
    wait_until(
        lambda: all(tab.snapshot().unread == BURST - READ for tab in tabs),
        10,
        lambda: (
            f"unread per tab {[t.snapshot().unread for t in tabs]}; "
            f"connects {[t.snapshot().connects for t in tabs]}; "
            f"closes {[t.snapshot().close_codes for t in tabs]}; "
            f"errors {[t.snapshot().errors for t in tabs]}; "
            f"layer queues {stack.layer_state()}"
        ),
    )
    assert unread_count(user) == BURST - READ
    wait_until(
        lambda: all(page.badge() == BURST - READ for page in user_pages),
        10,
        lambda: f"page badges {[page.badge() for page in user_pages]}",
    )
    assert bystander_page.ids() == set(), "another user's page saw the burst"

    # And a tab opened now agrees with the database.
    fresh = stack.loop.call(tabs[1].final_sync())
    assert fresh.unread == BURST - READ
    assert sorted(fresh.ids) == sorted(expected)
    assert len(fresh.unread_ids) == BURST - READ
    assert not stack.loop.failures()
