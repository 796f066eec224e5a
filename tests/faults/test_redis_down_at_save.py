"""Redis down at save: the API and the admin save without an error; the sweep delivers later.

The listener keeps running through the outage (no restart) and dispatches what was saved
within two sweep intervals plus the reconnect back-off ceiling of Redis coming back.
"""

from __future__ import annotations

import time

from django.contrib import messages
from django.contrib.messages import get_messages
from django.test import Client

from notifications import conf
from notifications.models import Audience, Delivery, Level, Notification
from notifications.services import notify
from tests.factories import UserFactory
from tests.faults.conftest import FAULT_TEST, Stack, make_users, wait_until

pytestmark = FAULT_TEST

ADD = "/admin/realtime_notifications/notification/add/"
CHANGELIST = "/admin/realtime_notifications/notification/"


def compose(recipient_id: int, title: str) -> dict[str, str]:
    """The admin add form's POST data: one user, sent now."""
    return {
        "audience": Audience.USER,
        "recipient": str(recipient_id),
        "group": "",
        "level": Level.WARNING,
        "title": title,
        "body": "Composed in the admin during a Redis outage.",
        "url": "/status/",
        "publish_at_0": "",
        "publish_at_1": "",
        "expires_at_0": "",
        "expires_at_1": "",
        "_save": "Save",
    }


def test_saves_while_redis_is_down_succeed_and_are_dispatched_when_it_returns(
    stack: Stack,
) -> None:
    (user,) = make_users(1, "outage")
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(root)
    listener = stack.start_listener()
    pid = listener.popen.pid

    stack.redis.stop()
    mark = len(listener.lines)
    listener.wait_for_line("Redis connection lost", timeout=15, start=mark)

    started = time.monotonic()
    via_api = notify(user, "Saved through notify() while Redis is down")
    api_seconds = time.monotonic() - started

    started = time.monotonic()
    response = admin.post(ADD, compose(user.pk, "Saved in the admin while Redis is down"))
    admin_seconds = time.monotonic() - started
    assert response.status_code == 302, response.content[:2000]
    assert response["Location"] == CHANGELIST
    shown = list(get_messages(response.wsgi_request))
    assert [m.level for m in shown] == [messages.SUCCESS], [str(m) for m in shown]
    via_admin = Notification.objects.get(title="Saved in the admin while Redis is down")
    assert via_admin.created_by == root

    # Saved, and waiting: nothing can dispatch while Redis is away.
    saved = [via_api.pk, via_admin.pk]
    assert Notification.objects.filter(pk__in=saved, dispatched_at__isnull=True).count() == 2
    assert not Delivery.objects.filter(notification_id__in=saved).exists()

    stack.redis.start()

    def dispatched() -> bool:
        return Delivery.objects.filter(notification_id__in=saved, user=user).count() == 2

    healed = wait_until(dispatched, 15, "the notifications saved during the outage")
    settings = conf.get()
    budget = 2 * settings.SWEEP_INTERVAL + settings.RECONNECT_MAX_DELAY
    print(
        f"\nRedis down: notify() took {api_seconds * 1000:.0f} ms, the admin save "
        f"{admin_seconds * 1000:.0f} ms; dispatched {healed:.2f} s after Redis returned "
        f"(budget {budget:g} s)"
    )
    # The listener's first reconnect attempt may be a moment after Redis returns; a second
    # of slack on top covers a loaded machine without hiding a missing sweep.
    assert healed < budget + 1.0, listener.output
    assert api_seconds < settings.PUBLISH_TIMEOUT + 0.5
    assert admin_seconds < settings.PUBLISH_TIMEOUT + 2.0
    assert listener.popen.poll() is None and listener.popen.pid == pid, "no restart"
    assert sum("Subscribed to" in line for line in listener.lines) == 2, listener.output
    assert Notification.objects.get(pk=via_admin.pk).recipient_count == 1

    # And the fast path is back: a new save is dispatched through pub/sub.
    after = notify(user, "After the outage")
    wait_until(lambda: Delivery.objects.filter(notification=after).exists(), 5, "the fast path")
