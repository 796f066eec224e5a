"""Slow or stopped listener: SIGSTOP under load for a few seconds, then SIGCONT.

Messages wait in Redis for the subscriber; a listener frozen inside a dispatch transaction
holds it open meanwhile. When it resumes it works through the backlog: every notification
dispatched exactly once, nothing lost, and live clients end up with all of theirs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from notifications.models import Delivery
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

pytestmark = FAULT_TEST

NOTIFICATIONS = 500
RATE = 80.0
STOPPED_FOR = 3.0  # seconds: the fault's length, not a synchronisation


def test_a_stopped_listener_loses_nothing(
    stack: Stack, run_creator: Callable[..., Creator]
) -> None:
    users = make_users(20, "frozen")
    ids = [u.pk for u in users]
    plan: list[Spec] = []
    audiences: list[set[int]] = []
    for i in range(NOTIFICATIONS):
        if i % 50 == 25:
            plan.append(Spec("all", None, f"frozen {i} to everyone"))
            audiences.append(set(ids))
        else:
            user = users[i % len(users)]
            plan.append(Spec("user", user.pk, f"frozen {i}"))
            audiences.append({user.pk})

    daphne = stack.start_daphne()
    listener = stack.start_listener()
    tabs = [stack.bell(user, daphne) for user in users[:3]]
    creator = run_creator(plan, RATE)
    creator.wait_for(100, 30)
    stack.pause(listener)
    paused_at = len(creator.created)
    time.sleep(STOPPED_FOR)
    resumed_at = len(creator.created)
    stack.resume(listener)
    created = creator.finish(60)
    caught_up = wait_until(lambda: undispatched() == 0, 30, lambda: f"{undispatched()} left")
    wait_until(
        lambda: all(
            tab.ids() == delivered_ids(user) for tab, user in zip(tabs, users, strict=False)
        ),
        15,
        "the tabs catching up",
    )
    print(
        f"\nlistener stopped {STOPPED_FOR:g} s at #{paused_at}, resumed at #{resumed_at}; "
        f"creator rate {creator.achieved_rate:.0f}/s; backlog cleared {caught_up:.2f} s after the "
        f"last create"
    )

    expected = {
        (nid, uid) for nid, audience in zip(created, audiences, strict=True) for uid in audience
    }
    assert set(Delivery.objects.values_list("notification_id", "user_id")) == expected
    assert Delivery.objects.count() == len(expected)
    counts = stack.wait_logged(created)
    assert set(counts.values()) == {1}, "each notification dispatched once"
    assert listener.popen.poll() is None
    assert "Traceback" not in listener.output, listener.output
    for tab in tabs:
        snap = tab.snapshot()
        assert snap.duplicate_pushes == 0
        assert not snap.errors
