"""Graceful stop: SIGTERM under load → the listener finishes its batch and exits 0 within 5 s.

Nothing is left half-done: every notification it dispatched has its complete set of Delivery
rows, the others have none, and the next listener dispatches everything else.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

from django.contrib.auth.models import Group
from django.db.models import Count

from notifications.models import Notification
from tests.faults.conftest import (
    FAULT_TEST,
    Creator,
    Spec,
    Stack,
    make_users,
    undispatched,
    wait_until,
)

pytestmark = FAULT_TEST

NOTIFICATIONS = 600
RATE = 100.0


def test_sigterm_under_load_exits_0_quickly_and_leaves_nothing_half_done(
    stack: Stack, run_creator: Callable[..., Creator]
) -> None:
    users = make_users(100, "graceful")
    ids = [u.pk for u in users]
    team = Group.objects.create(name="graceful-team")
    team.user_set.add(*ids[:40])
    plan: list[Spec] = []
    sizes: list[int] = []
    for i in range(NOTIFICATIONS):
        if i % 10 == 3:
            plan.append(Spec("all", None, f"graceful {i} to everyone"))
            sizes.append(len(ids))
        elif i % 10 == 7:
            plan.append(Spec("group", team.pk, f"graceful {i} to the team"))
            sizes.append(40)
        else:
            plan.append(Spec("user", ids[i % len(ids)], f"graceful {i}"))
            sizes.append(1)

    first = stack.start_listener()
    creator = run_creator(plan, RATE)
    creator.wait_for(200, 30)
    wait_until(lambda: "Dispatched notification" in first.output, 10, "the first dispatch")

    first.signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = first.popen.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running 5 s after SIGTERM:\n{first.output}") from None
    exited_in = time.monotonic() - started
    assert code == 0, first.output
    assert "Received SIGTERM" in first.output
    assert "Traceback" not in first.output, first.output

    def delivery_counts() -> dict[int, int]:
        return dict(Notification.objects.annotate(n=Count("deliveries")).values_list("id", "n"))

    def audience_sizes() -> dict[int, int]:
        # By title ("graceful <index> ..."): the creator is still saving more meanwhile.
        return {
            nid: sizes[int(title.split()[1])]
            for nid, title in Notification.objects.values_list("id", "title")
        }

    # Nothing half-done: a dispatched notification has all its rows, an undispatched one none.
    # No listener runs now, so nothing changes between these queries but new rows.
    dispatched = set(
        Notification.objects.filter(dispatched_at__isnull=False).values_list("id", flat=True)
    )
    counts = delivery_counts()
    expected_size = audience_sizes()
    assert dispatched, "the first listener dispatched nothing before SIGTERM"
    for nid, n in counts.items():
        assert n == (expected_size[nid] if nid in dispatched else 0), nid
    logged = stack.dispatch_counts()
    assert set(logged) == dispatched, "every claim it committed was pushed and logged too"

    stack.start_listener()
    created = creator.finish(60)
    wait_until(lambda: undispatched() == 0, 20, lambda: f"{undispatched()} undispatched")
    counts = delivery_counts()
    print(
        f"\nSIGTERM after #{len(dispatched)} dispatched: exit 0 in {exited_in:.2f} s; "
        f"the next listener dispatched the remaining {len(created) - len(dispatched)}"
    )
    assert counts == dict(zip(created, sizes, strict=True)) == audience_sizes()
    recipient_counts = dict(Notification.objects.values_list("id", "recipient_count"))
    assert recipient_counts == counts
    assert set(stack.wait_logged(created).values()) == {1}
