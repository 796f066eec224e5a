"""Rollback: a notification saved in a transaction that rolls back is never announced.

Interleaved with committed ones, under a running listener: no PUBLISH (checked by a subscriber
of this test's own on the private Redis channel), no Delivery row, no frame on a live socket,
and the listener never meets a row that is not there (no DoesNotExist, no traceback).
"""

from __future__ import annotations

import contextlib
import time

from django.db import transaction

from notifications import conf
from notifications.events import parse_pubsub_message
from notifications.models import Delivery, Notification
from notifications.services import broadcast, notify
from tests.faults.conftest import (
    FAULT_TEST,
    Stack,
    delivered_ids,
    make_users,
    no_tracebacks,
    undispatched,
    wait_until,
)

pytestmark = FAULT_TEST

ROUNDS = 15


class Rollback(Exception):
    """Raised inside a transaction to roll it back."""


def test_rolled_back_notifications_are_never_published_recorded_or_pushed(stack: Stack) -> None:
    user, other = make_users(2, "rollback")
    daphne = stack.start_daphne()
    listener = stack.start_listener()
    tab = stack.bell(user, daphne)
    other_tab = stack.bell(other, daphne)

    subscriber = stack.redis.client()
    pubsub = subscriber.pubsub()
    pubsub.subscribe(conf.get().CHANNEL)
    wait_until(
        lambda: (m := pubsub.get_message(timeout=0.1)) is not None and m["type"] == "subscribe",
        5,
        "the test's SUBSCRIBE was never confirmed",
    )
    published: list[int] = []
    try:
        committed: list[int] = []
        for i in range(ROUNDS):
            # Autocommit: published at once.
            committed.append(notify(user, f"committed {i}").pk)
            # A whole transaction rolled back.
            with contextlib.suppress(Rollback), transaction.atomic():
                notify(user, f"rolled back {i}")
                raise Rollback
            # A committed transaction with a rolled-back savepoint inside it.
            with transaction.atomic():
                committed.append(notify(user, f"committed in a block {i}").pk)
                with contextlib.suppress(Rollback), transaction.atomic():
                    notify(user, f"rolled back savepoint {i}")
                    broadcast(f"rolled back broadcast in a savepoint {i}")
                    raise Rollback
                committed.append(notify(other, f"committed after a savepoint {i}").pk)
            # A broadcast rolled back.
            with contextlib.suppress(Rollback), transaction.atomic():
                broadcast(f"rolled back broadcast {i}")
                raise Rollback

        # Every PUBLISH above has returned; a PING answered on the subscriber's connection
        # comes after every message published before it.
        pubsub.ping()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is None:
                continue
            if message["type"] == "pong":
                break
            if message["type"] == "message":
                published.append(parse_pubsub_message(message["data"]))
        else:
            raise AssertionError(f"no pong on the subscriber; published so far {published}")
    finally:
        pubsub.close()
        subscriber.close()

    wait_until(lambda: undispatched() == 0, 10, lambda: f"{undispatched()} undispatched")
    wait_until(
        lambda: tab.ids() == delivered_ids(user) and other_tab.ids() == delivered_ids(other),
        10,
        lambda: f"tab has {sorted(tab.ids())}, db {sorted(delivered_ids(user))}",
    )

    assert published == committed, "exactly the committed notifications, each published once"
    assert sorted(Notification.objects.values_list("id", flat=True)) == sorted(committed)
    assert not Notification.objects.filter(title__contains="rolled back").exists()
    assert set(Delivery.objects.values_list("notification_id", flat=True)) == set(committed)
    assert Delivery.objects.count() == len(committed)
    for client, owner in ((tab, user), (other_tab, other)):
        snap = client.snapshot()
        assert snap.ids == delivered_ids(owner)
        assert not [t for t in snap.titles.values() if "rolled back" in t]
        assert snap.duplicate_pushes == 0
    assert listener.popen.poll() is None
    assert no_tracebacks(listener.output), listener.output
    assert stack.wait_logged(committed) == {nid: 1 for nid in committed}
