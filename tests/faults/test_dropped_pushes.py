"""Dropped pushes: a burst larger than the channel layer's capacity, to one user with 3 tabs.

The listener and daphne run with a channel capacity of 20 (tests/faults/small_capacity_settings),
so channels-redis drops most of the burst's pushes without a word. Each tab must notice the gap
(``pong.last_id`` above what it has), ``sync``, and end up showing every notification exactly
once, with the badge equal to the database's unread count.
"""

from __future__ import annotations

from django.db import transaction

from notifications.selectors import unread_count
from notifications.services import notify
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


def test_every_tab_recovers_a_burst_the_channel_layer_dropped(stack: Stack) -> None:
    user, bystander = make_users(2, "burst")
    daphne = stack.start_daphne(settings_module=SMALL_CAPACITY_SETTINGS)
    stack.start_listener(settings_module=SMALL_CAPACITY_SETTINGS)
    tabs = [stack.bell(user, daphne, name=f"tab{i}", ping_interval=0.5) for i in range(TABS)]
    other = stack.bell(bystander, daphne, name="bystander", ping_interval=0.5)

    # One transaction: all of it commits at once, 300 PUBLISHes follow in a row, and the
    # listener pushes them as fast as it can to the user's group of three sockets.
    with transaction.atomic():
        created = [notify(user, f"burst {i}").pk for i in range(BURST)]
    wait_until(lambda: undispatched() == 0, 30, lambda: f"{undispatched()} undispatched")
    expected = delivered_ids(user)
    assert expected == set(created)

    def caught_up() -> bool:
        return all(tab.ids() == expected for tab in tabs)

    wait_until(
        caught_up,
        30,
        lambda: "; ".join(f"{t.name} has {len(t.ids())} of {len(expected)}" for t in tabs),
        interval=0.1,
    )
    snapshots = [tab.snapshot() for tab in tabs]
    print()
    print(f"burst of {BURST} to one user, {TABS} tabs, channel capacity 20")
    for snap in snapshots:
        print(
            f"  {snap.name}: {len(snap.pushes)} pushed, {len(snap.sync_only)} recovered by sync"
            f" ({snap.gap_syncs} gap syncs), {snap.duplicate_pushes} duplicate pushes"
        )
    dropped = sum(len(snap.sync_only) for snap in snapshots)
    assert dropped > 0, "the burst never overflowed the channel: this test proves nothing"
    for snap in snapshots:
        assert snap.duplicate_pushes == 0, snap.name
        assert len(snap.pushes) == len(set(snap.pushes)), snap.name
        assert snap.ids == expected, snap.name
        assert not snap.reread_only, f"{snap.name}: the sync cursor skipped {snap.reread_only}"
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

    # And a tab opened now agrees with the database.
    fresh = stack.loop.call(tabs[1].final_sync())
    assert fresh.unread == BURST - READ
    assert sorted(fresh.ids) == sorted(expected)
    assert len(fresh.unread_ids) == BURST - READ
    assert not stack.loop.failures()
