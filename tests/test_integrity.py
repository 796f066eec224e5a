"""No Delivery outlives its notification or its user, whatever deletes race the inserts.

Delivery has no database foreign keys (their per-row checks doubled the cost of writing a
broadcast), so the app itself must keep deletions and inserts apart: a notification's
deletion locks its row (receivers.lock_notification_before_delete), a user's deletion takes
the Delivery insert lock (receivers.lock_user_before_delete), and every insert takes its
share of them (services.deliveries_record_chunk, deliveries_record_in_flight).

Here threads, each on a connection of its own, record broadcasts in chunks, ack and sync
(the in-flight inserts) while another deletes users and notifications; then an anti-join
counts the rows that name a missing notification or user. The inserts are slowed by a few
milliseconds on each side (a loaded database): without the locks, every run of this test
left such rows, on PostgreSQL and on SQLite.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, connections
from django.test import override_settings

from notifications import dispatch, services
from notifications.consumers import missed_with_in_flight
from notifications.dispatch import claim_broadcast, record_broadcast
from notifications.models import Delivery, Notification
from notifications.services import broadcast, deliveries_mark_delivered

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 5
USERS_PER_ROUND = 18
BROADCASTS_PER_ROUND = 6
# Each insert waits this long before and after its statement (inside its transaction):
# the windows a loaded database opens between a read and its commit, made wide enough to
# be hit every round.
INSERT_DELAY = 0.004


def orphan_counts() -> tuple[int, int]:
    """Return how many Delivery rows name a missing notification, and a missing user."""
    qn = connection.ops.quote_name
    delivery = qn(Delivery._meta.db_table)
    user_model = get_user_model()
    checks = (
        (Notification._meta.db_table, Notification._meta.pk.column, "notification_id"),
        (user_model._meta.db_table, user_model._meta.pk.column, "user_id"),
    )
    counts = []
    with connection.cursor() as cursor:
        for table, pk, column in checks:
            cursor.execute(
                f"SELECT COUNT(*) FROM {delivery} d "  # noqa: S608 - quoted names only
                f"LEFT JOIN {qn(table)} t ON t.{qn(pk)} = d.{qn(column)} "
                f"WHERE t.{qn(pk)} IS NULL"
            )
            counts.append(cursor.fetchone()[0])
    return counts[0], counts[1]


@pytest.fixture
def slow_inserts(monkeypatch: pytest.MonkeyPatch) -> None:
    real = services.deliveries_record_chunk

    def slow(*args: Any, **kwargs: Any) -> int:
        time.sleep(INSERT_DELAY)
        inserted = real(*args, **kwargs)
        time.sleep(INSERT_DELAY)  # still uncommitted: the caller's transaction goes on
        return inserted

    monkeypatch.setattr(services, "deliveries_record_chunk", slow)
    monkeypatch.setattr(dispatch, "deliveries_record_chunk", slow)


@pytest.fixture
def small_chunks(settings: Any) -> Iterator[None]:
    """Broadcasts recorded in many chunks: many transactions, many windows."""
    with override_settings(NOTIFICATIONS={**settings.NOTIFICATIONS, "CHUNK_SIZE": 4}):
        yield


class Worker(threading.Thread):
    """Run ``step`` until told to stop, on this thread's own database connection."""

    def __init__(self, name: str, step: Callable[[random.Random], None], stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.step = step
        self.stop_event = stop
        self.steps = 0
        self.errors: list[str] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.name)
        try:
            while not self.stop_event.is_set():
                try:
                    self.step(rng)
                except DatabaseError as exc:
                    # A deadlock victim or a busy SQLite: an error the caller would see and
                    # retry, never a reason for a row to be left behind.
                    self.errors.append(repr(exc))
                self.steps += 1
                # Acks and syncs come at intervals, not back to back: on SQLite a writer in
                # a tight loop would keep the deleter from ever getting the write lock.
                time.sleep(rng.uniform(0, 4 * INSERT_DELAY))
        except BaseException as exc:  # reported by the test
            self.failure = exc
        finally:
            connections.close_all()


def race_one_round(round_number: int, totals: dict[str, int], errors: list[str]) -> None:
    """Create users and broadcasts in flight; insert and delete them from four threads."""
    user_model = get_user_model()
    prefix = f"integrity-{round_number}-"
    user_model.objects.bulk_create(
        user_model(username=f"{prefix}{i}") for i in range(USERS_PER_ROUND)
    )
    user_ids = list(
        user_model.objects.filter(username__startswith=prefix).values_list("pk", flat=True)
    )
    notification_ids = []
    for index in range(BROADCASTS_PER_ROUND):
        made = broadcast(f"round {round_number} #{index}")
        claim_broadcast(made.pk)  # pushed, rows not written yet: in flight
        notification_ids.append(made.pk)
    stop = threading.Event()

    def record(rng: random.Random) -> None:
        for notification_id in rng.sample(notification_ids, len(notification_ids)):
            if record_broadcast(notification_id) is not None:
                totals["recorded"] += 1

    def ack(rng: random.Random) -> None:
        deliveries_mark_delivered(rng.choice(user_ids), notification_ids)
        totals["acks"] += 1

    def sync(rng: random.Random) -> None:
        missed_with_in_flight(rng.choice(user_ids), None)
        totals["syncs"] += 1

    workers = [
        Worker(f"{name}-{round_number}", step, stop)
        for name, step in (("recorder", record), ("acks", ack), ("syncs", sync))
    ]
    for worker in workers:
        worker.start()
    rng = random.Random(round_number)
    doomed_users = rng.sample(user_ids, USERS_PER_ROUND // 2)
    doomed_notifications = rng.sample(notification_ids, BROADCASTS_PER_ROUND // 2)
    try:
        for index, user_id in enumerate(doomed_users):
            time.sleep(rng.uniform(0, 3 * INSERT_DELAY))
            user_model.objects.filter(pk=user_id).delete()  # as the admin's bulk delete does
            totals["users_deleted"] += 1
            if index % 4 == 0 and doomed_notifications:
                Notification.objects.get(pk=doomed_notifications.pop()).delete()
                totals["notifications_deleted"] += 1
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    for worker in workers:
        assert not worker.is_alive(), f"{worker.name} hung"
        if worker.failure is not None:
            raise worker.failure
        errors.extend(worker.errors)
    # Finish what the deletions interrupted, as the listener's sweep would.
    for notification_id in notification_ids:
        record_broadcast(notification_id)


@pytest.mark.usefixtures("slow_inserts", "small_chunks")
def test_no_delivery_outlives_its_notification_or_its_user_under_concurrent_deletes() -> None:
    totals = dict.fromkeys(
        ("recorded", "acks", "syncs", "users_deleted", "notifications_deleted"), 0
    )
    errors: list[str] = []
    for round_number in range(ROUNDS):
        race_one_round(round_number, totals, errors)
    without_notification, without_user = orphan_counts()
    print(
        f"\n{connection.vendor}: {totals}; {len(errors)} database error(s) retried "
        f"{sorted(set(errors))[:3]}; orphans: {without_notification} without notification, "
        f"{without_user} without user"
    )
    assert (without_notification, without_user) == (0, 0)
    assert totals["acks"] and totals["syncs"]
    # The in-flight writers' locks must not make the recorder skip broadcasts (leaving them
    # to a sweep): most of those that survive their round are recorded within it.
    assert totals["recorded"] >= ROUNDS * (BROADCASTS_PER_ROUND // 2) // 2
