"""Background marks give way to the verbs a user waits for (notifications.write_priority)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from notifications import services, write_priority
from notifications.models import Audience, Delivery, DeliveryState, Notification
from notifications.write_priority import foreground, give_way, writing
from tests.factories import UserFactory


def in_thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_with_no_verb_in_flight_a_batch_goes_at_once() -> None:
    assert writing() == 0
    assert give_way() is False


def test_a_batch_waits_until_the_verbs_in_flight_are_written() -> None:
    order: list[str] = []
    inside, release = threading.Event(), threading.Event()

    def verb() -> None:
        with foreground():
            inside.set()
            release.wait(5)
            order.append("verb written")

    def batch() -> None:
        waited = give_way(timeout=5)
        order.append(f"batch (waited: {waited})")

    verb_thread = in_thread(verb)
    assert inside.wait(5)
    batch_thread = in_thread(batch)
    time.sleep(0.05)  # the batch is inside give_way now, or will find the verb there
    assert order == []
    release.set()
    verb_thread.join(5)
    batch_thread.join(5)
    assert order == ["verb written", "batch (waited: True)"]
    assert writing() == 0


def test_a_stream_of_verbs_does_not_starve_the_batch() -> None:
    release = threading.Event()
    inside = threading.Event()

    def endless_verb() -> None:
        with foreground():
            inside.set()
            release.wait(5)

    thread = in_thread(endless_verb)
    assert inside.wait(5)
    assert give_way(timeout=0.05) is True  # returned while the verb is still writing
    assert writing() == 1
    release.set()
    thread.join(5)
    assert writing() == 0


def test_a_verb_that_fails_still_lets_the_batches_go() -> None:
    with pytest.raises(RuntimeError), foreground():
        raise RuntimeError("the database went away")
    assert writing() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "verb",
    [
        lambda user, ids: services.deliveries_mark_read(user, ids),
        lambda user, ids: services.deliveries_mark_all_read(user),
        lambda user, ids: services.deliveries_archive(user, ids),
        lambda user, ids: services.deliveries_unarchive(user, ids),
        lambda user, ids: services.deliveries_mark_unread(user, ids),
        lambda user, ids: services.deliveries_snooze(
            user, ids, timezone.now() + timedelta(hours=1)
        ),
    ],
    ids=["read", "read_all", "archive", "unarchive", "unread", "snooze"],
)
def test_every_verb_writes_in_the_foreground(verb, monkeypatch) -> None:
    user = UserFactory()
    note = Notification.objects.create(
        title="n", audience=Audience.ALL, dispatched_at=timezone.now(), recorded_at=timezone.now()
    )
    Delivery.objects.create(notification=note, user=user, state=DeliveryState.DELIVERED)
    seen: list[int] = []
    real = services.unread_count

    def counting(*args: Any, **kwargs: Any) -> int:
        seen.append(write_priority.writing())
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "unread_count", counting)
    verb(user, [note.pk])
    assert seen and all(count == 1 for count in seen)
    assert writing() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "write", [services.deliveries_mark_delivered_many, services.deliveries_mark_seen_many]
)
def test_a_marks_batch_gives_way_before_each_of_its_statements(write, monkeypatch) -> None:
    user = UserFactory()
    now = timezone.now()
    notes = Notification.objects.bulk_create(
        [
            Notification(title=f"n{i}", recipient=user, dispatched_at=now, recorded_at=now)
            for i in range(250)
        ]
    )
    Delivery.objects.bulk_create([Delivery(notification=n, user=user) for n in notes])
    turns: list[int] = []
    monkeypatch.setattr(services, "give_way", lambda: turns.append(1))
    assert write({n.pk: [user.pk] for n in notes}) == 250
    assert len(turns) == 3  # 100 notifications per statement
