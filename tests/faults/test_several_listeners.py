"""Several listeners: two, then three, on one database and one Redis — each notification once.

Every listener receives every PUBLISH and races for the claim (a conditional UPDATE in its
own transaction); exactly one wins. No duplicate Delivery row, no duplicate push.
"""

from __future__ import annotations

from collections import Counter

from notifications.models import Delivery
from notifications.services import broadcast, notify
from tests.faults.conftest import (
    FAULT_TEST,
    Stack,
    delivered_ids,
    make_users,
    undispatched,
    wait_until,
)

pytestmark = FAULT_TEST

PER_ROUND = 200


def test_several_listeners_dispatch_each_notification_exactly_once(stack: Stack) -> None:
    users = make_users(20, "multi")
    target = users[0]
    daphne = stack.start_daphne()
    stack.start_listener()
    stack.start_listener()
    tabs = [stack.bell(target, daphne, name=f"tab{i}") for i in range(2)]

    expected: set[tuple[int, int]] = set()
    for listeners in (2, 3):
        if listeners == 3:
            stack.start_listener()
        assert len(stack.listeners) == listeners
        # A burst, published one by one as fast as this process can save.
        for i in range(PER_ROUND):
            if i % 20 == 7:
                made = broadcast(f"round {listeners}: {i} to everyone")
                expected |= {(made.pk, u.pk) for u in users}
            else:
                user = target if i % 2 else users[1 + i % (len(users) - 1)]
                made = notify(user, f"round {listeners}: {i}")
                expected.add((made.pk, user.pk))
        wait_until(lambda: undispatched() == 0, 20, lambda: f"{undispatched()} undispatched")
        wait_until(
            lambda: all(tab.ids() == delivered_ids(target) for tab in tabs),
            10,
            lambda: f"tabs have {[len(t.ids()) for t in tabs]} of {len(delivered_ids(target))}",
        )
        per_listener = [
            sum(1 for line in proc.lines if "Dispatched notification" in line)
            for proc in stack.listeners
        ]
        print(f"\n{listeners} listeners: dispatches per listener so far {per_listener}")

    assert set(Delivery.objects.values_list("notification_id", "user_id")) == expected
    assert Delivery.objects.count() == len(expected)
    notification_ids = {nid for nid, _ in expected}
    counts = stack.wait_logged(notification_ids)
    assert set(counts) == notification_ids
    assert set(counts.values()) == {1}, [nid for nid, n in counts.items() if n > 1]
    assert sum(1 for proc in stack.listeners if "Dispatched notification" in proc.output) >= 2, (
        "only one listener ever won a claim: the race was not exercised"
    )
    mine = delivered_ids(target)
    for tab in tabs:
        snap = tab.snapshot()
        pushes = Counter(snap.pushes)
        assert set(pushes) == mine, f"{snap.name} missed pushes: {sorted(mine - set(pushes))}"
        assert set(pushes.values()) == {1}, f"{snap.name} got a push twice"
        assert snap.ids == mine
    for proc in stack.listeners:
        assert proc.popen.poll() is None
        assert "Traceback" not in proc.output, proc.output
