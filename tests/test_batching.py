"""Acks and seen marks: many users' written at once, per notification (group commit)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from notifications.batching import BatchedMarks, ProcessMarks
from notifications.models import Audience, Delivery, DeliveryState, Notification
from notifications.services import deliveries_mark_delivered_many, deliveries_mark_seen_many
from tests.factories import UserFactory


def rows(users, notification) -> dict:
    return {
        row.user_id: row
        for row in Delivery.objects.filter(notification=notification, user__in=users)
    }


def broadcast_to(users, recorded: bool = True) -> Notification:
    now = timezone.now()
    notification = Notification.objects.create(
        title="n", audience=Audience.ALL, dispatched_at=now, recorded_at=now if recorded else None
    )
    if recorded:
        Delivery.objects.bulk_create([Delivery(notification=notification, user=u) for u in users])
    return notification


@pytest.mark.django_db
def test_seen_marks_of_many_users_first_time_only(django_assert_max_num_queries) -> None:
    users = UserFactory.create_batch(3)
    notification, other = broadcast_to(users), broadcast_to(users[:1])
    with django_assert_max_num_queries(1):  # one UPDATE for both, no transaction around it
        marked = deliveries_mark_seen_many(
            {notification.pk: [u.pk for u in users], other.pk: [users[0].pk]}
        )
    assert marked == 4
    first = {uid: row.seen_at for uid, row in rows(users, notification).items()}
    assert all(first.values())
    assert deliveries_mark_seen_many({notification.pk: [users[0].pk]}) == 0
    assert {uid: row.seen_at for uid, row in rows(users, notification).items()} == first


@pytest.mark.django_db
def test_acks_of_many_users_in_one_statement_and_only_pending_rows() -> None:
    users = UserFactory.create_batch(3)
    notification = broadcast_to(users)
    Delivery.objects.filter(notification=notification, user=users[0]).update(
        state=DeliveryState.READ
    )
    assert deliveries_mark_delivered_many({notification.pk: [u.pk for u in users]}) == 2
    states = {uid: row.state for uid, row in rows(users, notification).items()}
    assert states == {
        users[0].pk: DeliveryState.READ,
        users[1].pk: DeliveryState.DELIVERED,
        users[2].pk: DeliveryState.DELIVERED,
    }


def one_user_notifications(users, each: int) -> dict[int, list]:
    """``each`` dispatched one-user notifications per user: {notification id: [user id]}."""
    marks = {}
    for user in users:
        for _ in range(each):
            notification = Notification.objects.create(
                title="n", recipient=user, audience=Audience.USER, dispatched_at=timezone.now()
            )
            Delivery.objects.create(notification=notification, user=user)
            marks[notification.pk] = [user.pk]
    return marks


@pytest.mark.django_db
def test_acks_and_seen_marks_of_one_user_notifications_share_statements(
    django_assert_max_num_queries,
) -> None:
    """A push per user, an ack and a seen mark per push: a window's worth is a few
    statements, not one per notification (on SQLite each a commit of the one write lock)."""
    users = UserFactory.create_batch(30)
    marks = one_user_notifications(users, 5)  # 150 notifications: two statements of <= 100
    with django_assert_max_num_queries(3):  # the in-flight check and two UPDATEs
        assert deliveries_mark_delivered_many(marks) == 150
    with django_assert_max_num_queries(2):
        assert deliveries_mark_seen_many(marks) == 150
    rows_of = Delivery.objects.filter(notification_id__in=list(marks))
    assert rows_of.filter(state=DeliveryState.DELIVERED, seen_at__isnull=False).count() == 150
    # Each mark names its own row: user A's ack of B's notification changes nothing.
    swapped = {nid: [users[0].pk] for nid in list(marks)[10:20]}
    Delivery.objects.filter(notification_id__in=list(marks)).update(state=DeliveryState.PENDING)
    assert deliveries_mark_delivered_many(swapped) == 0


@pytest.mark.django_db
def test_acks_of_a_broadcast_not_yet_recorded_write_the_ackers_rows_only() -> None:
    users = UserFactory.create_batch(3)
    notification = broadcast_to(users, recorded=False)
    assert deliveries_mark_delivered_many({notification.pk: [users[0].pk, users[1].pk]}) == 2
    got = rows(users, notification)
    assert set(got) == {users[0].pk, users[1].pk}
    assert all(row.state == DeliveryState.DELIVERED for row in got.values())


@pytest.mark.django_db
def test_acks_for_others_notifications_write_nothing() -> None:
    me, other = UserFactory.create_batch(2)
    theirs = Notification.objects.create(
        title="t", audience=Audience.USER, recipient=other, dispatched_at=timezone.now()
    )
    assert deliveries_mark_delivered_many({theirs.pk: [me.pk]}) == 0
    assert not Delivery.objects.filter(user=me).exists()


async def test_one_window_is_one_write_and_every_caller_waits_for_it() -> None:
    writes: list[dict] = []

    async def write(marks) -> int:
        writes.append(marks)
        return sum(len(users) for users in marks.values())

    batcher = BatchedMarks(write, window=0.02)
    results = await asyncio.gather(
        asyncio.shield(batcher.add("a", [1, 2])),
        asyncio.shield(batcher.add("b", [1])),
    )
    assert results == [3, 3]
    assert writes == [{1: {"a", "b"}, 2: {"a"}}]
    assert await batcher.add("c", [5]) == 1  # the next window: a batch of its own
    assert len(writes) == 2


async def test_a_failed_write_fails_its_callers_and_the_next_window_starts_afresh() -> None:
    calls = 0

    async def write(marks) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database away")
        return 1

    batcher = BatchedMarks(write, window=0.01)
    with pytest.raises(RuntimeError, match="database away"):
        await batcher.add("a", [1])
    assert await batcher.add("a", [1]) == 1


@pytest.mark.django_db(transaction=True)
async def test_seen_marks_are_written_within_their_window(caplog) -> None:
    users = await sync_to_async(UserFactory.create_batch)(2)
    notification = await sync_to_async(broadcast_to)(users)
    marks = ProcessMarks()
    marks.seen.window = 0.1
    for user in users:
        marks.mark_seen(user.pk, [notification.pk])
    for _ in range(60):
        await asyncio.sleep(0.05)
        got = await sync_to_async(rows)(users, notification)
        if all(row.seen_at for row in got.values()):
            break
    else:
        raise AssertionError("the seen marks were never written")


async def test_after_runs_once_per_committed_batch_that_changed_rows(caplog) -> None:
    results = iter([2, 0])
    told: list[dict] = []

    async def write(marks) -> int:
        result = next(results, None)
        if result is None:
            raise RuntimeError("database away")
        return result

    async def after(marks) -> None:
        told.append(marks)

    batcher = BatchedMarks(write, window=0.01, what="acks", after=after)
    first = [batcher.add(user, [7]) for user in ("a", "b")]
    assert await asyncio.gather(*first) == [2, 2]
    await asyncio.sleep(0.01)  # ``after`` runs in the batch's task, right after its result
    assert told == [{7: {"a", "b"}}]
    assert await batcher.add("c", [8]) == 0  # changed nothing: nobody is told
    caplog.set_level("WARNING", logger="notifications.batching")
    failing = [batcher.add(user, [9]) for user in ("a", "b", "c")]
    for batch in failing:
        with pytest.raises(RuntimeError):
            await batch
    assert told == [{7: {"a", "b"}}]
    # One warning for the failed batch, not one per socket that added to it.
    assert [r.getMessage() for r in caplog.records] == [
        "Could not record a batch of acks: RuntimeError('database away')"
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_committed_ack_batch_tells_watchers_once_per_user(redis_client) -> None:
    """watch_notifications hears one ``delivered`` per user of a batch, with that user's
    ids, through real Redis pub/sub."""
    import json
    import time

    from notifications import observe

    users = await sync_to_async(UserFactory.create_batch)(3)
    first = await sync_to_async(broadcast_to)(users)
    second = await sync_to_async(broadcast_to)(users)
    observe.reset()
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(observe.watch_channel())
    try:
        marks = ProcessMarks()
        marks.mark_delivered(users[0].pk, [first.pk, second.pk])
        batch = marks.mark_delivered(users[1].pk, [second.pk])
        assert await batch == 3
        heard: list[dict] = []
        deadline = time.monotonic() + 5
        while len(heard) < 2 and time.monotonic() < deadline:
            message = await sync_to_async(pubsub.get_message)(timeout=0.1)
            if message is not None:
                heard.append(json.loads(message["data"]))
        await asyncio.sleep(0.2)
        assert await sync_to_async(pubsub.get_message)(timeout=0.2) is None  # nothing more
    finally:
        pubsub.close()
        observe.reset()
    by_user = {event["user"]: event["ids"] for event in heard if event["event"] == "delivered"}
    assert by_user == {
        str(users[0].pk): sorted([first.pk, second.pk]),
        str(users[1].pk): [second.pk],
    }
