"""A private redis-server is stopped and restarted under a running listener process."""

import time

import pytest
from django.conf import settings
from django.test import override_settings

from notifications import publisher
from notifications.models import Delivery, Notification
from notifications.services import notify
from tests import processes
from tests.factories import UserFactory

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not true after {timeout} s")


def test_listener_reconnects_after_redis_restarts_and_delivers_what_was_saved_meanwhile(
    live_env,
):
    port = processes.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis_proc = processes.start_redis(port)
    listener = processes.start_listener({**live_env, "TEST_REDIS_URL": url})
    user = UserFactory()
    try:
        with override_settings(NOTIFICATIONS={**settings.NOTIFICATIONS, "REDIS_URL": url}):
            before = notify(user, "Before the outage")
            wait_for(lambda: Delivery.objects.filter(notification=before).exists(), 10)

            redis_proc.stop()
            mark = len(listener.lines)
            listener.wait_for_line("Redis connection lost", timeout=15, start=mark)
            during = notify(user, "Saved while Redis is down")  # must not raise
            assert not Notification.objects.get(pk=during.pk).dispatched_at

            redis_proc = processes.start_redis(port)
            publisher.reset()
            healed = wait_for(lambda: Delivery.objects.filter(notification=during).exists(), 15)
            after = notify(user, "After the outage")
            wait_for(lambda: Delivery.objects.filter(notification=after).exists(), 10)
        # Two sweep intervals (1 s in tests) plus the reconnect back-off ceiling (1 s).
        assert healed < 5, listener.output
        assert listener.popen.poll() is None, "the listener must survive the outage"
        assert Delivery.objects.filter(user=user).count() == 3
    finally:
        listener.stop()
        redis_proc.stop()
