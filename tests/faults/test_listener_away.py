"""Listener away: what was saved while no listener ran is all dispatched when one starts."""

from __future__ import annotations

from django.contrib.auth.models import Group

from notifications.models import Delivery, Notification
from notifications.services import broadcast, notify
from tests.faults.conftest import FAULT_TEST, Stack, make_users, undispatched, wait_until

pytestmark = FAULT_TEST


def test_notifications_saved_while_no_listener_runs_are_dispatched_when_one_starts(
    stack: Stack,
) -> None:
    users = make_users(30, "away")
    team = Group.objects.create(name="away-team")
    team.user_set.add(*users[:10])
    expected: set[tuple[int, int]] = set()
    for i in range(120):
        user = users[i % len(users)]
        expected.add((notify(user, f"while away {i}").pk, user.pk))
    everyone = broadcast("while away, to everyone")
    expected |= {(everyone.pk, u.pk) for u in users}
    group = broadcast("while away, to the team", audience="group", group=team)
    expected |= {(group.pk, u.pk) for u in users[:10]}

    # Published into the void: nobody was subscribed, nothing was dispatched.
    assert undispatched() == 122
    assert not Delivery.objects.exists()

    listener = stack.start_listener()
    took = wait_until(lambda: undispatched() == 0, 15, lambda: f"{undispatched()} left")
    print(f"\nbacklog of 122 dispatched {took:.2f} s after the listener subscribed")

    assert set(Delivery.objects.values_list("notification_id", "user_id")) == expected
    assert Delivery.objects.count() == len(expected)
    assert Notification.objects.get(pk=everyone.pk).recipient_count == len(users)
    assert "Sweep found 122 undispatched notification(s)" in listener.output, listener.output
    assert stack.wait_logged(nid for nid, _ in expected) == {nid: 1 for nid, _ in expected}
