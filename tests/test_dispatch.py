"""dispatch: resolve audiences, claim and record once, schedule and expire."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.audience import audience_queryset
from notifications.dispatch import (
    claim_broadcast,
    dispatch_batch,
    dispatch_many,
    dispatch_notification,
    due_notification_ids,
    fan_out_groups,
    next_scheduled_at,
    record_broadcast,
    unrecorded_notification_ids,
)
from notifications.events import GROUP_ALL, GROUP_STAFF, auth_group_group, user_group
from notifications.models import Audience, Delivery, DeliveryState, Notification
from notifications.services import deliveries_record_audience
from tests.factories import GroupFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def notification(**fields: Any) -> Notification:
    return Notification.objects.create(**{"title": "Hi", "audience": Audience.ALL, **fields})


def audience_ids(row: Notification) -> list[int]:
    return sorted(audience_queryset(row).values_list("pk", flat=True))


@pytest.fixture
def people():
    """Two plain users, two staff, one inactive user and one inactive staff member."""
    return {
        "plain": UserFactory.create_batch(2),
        "staff": StaffFactory.create_batch(2),
        "inactive": UserFactory(is_active=False),
        "inactive_staff": StaffFactory(is_active=False),
    }


def pks(users: list) -> list[int]:
    return sorted(user.pk for user in users)


# ---- audiences -------------------------------------------------------------------------------


def test_user_audience(people) -> None:
    target = people["plain"][1]
    row = notification(audience=Audience.USER, recipient=target)
    assert audience_ids(row) == [target.pk]


def test_inactive_recipient_gets_nothing(people) -> None:
    row = notification(audience=Audience.USER, recipient=people["inactive"])
    assert audience_ids(row) == []


def test_group_audience(people) -> None:
    group, other_group = GroupFactory(), GroupFactory()
    members = [people["plain"][0], people["staff"][1]]
    for user in [*members, people["inactive"]]:
        user.groups.add(group)
    people["plain"][1].groups.add(other_group)
    row = notification(audience=Audience.GROUP, group=group)
    assert audience_ids(row) == pks(members)


def test_staff_audience(people) -> None:
    row = notification(audience=Audience.STAFF)
    assert audience_ids(row) == pks(people["staff"])


def test_all_audience(people) -> None:
    row = notification(audience=Audience.ALL)
    assert audience_ids(row) == pks(people["plain"] + people["staff"])


def test_unknown_audience_raises() -> None:
    with pytest.raises(ValueError, match="unknown audience"):
        audience_queryset(Notification(title="x", audience="planet"))


# ---- fan-out groups --------------------------------------------------------------------------


def test_fan_out_groups(people) -> None:
    user = people["plain"][0]
    group = GroupFactory()
    assert fan_out_groups(notification(audience=Audience.USER, recipient=user)) == [
        user_group(user.pk)
    ]
    assert fan_out_groups(notification(audience=Audience.GROUP, group=group)) == [
        auth_group_group(group.pk)
    ]
    assert fan_out_groups(notification(audience=Audience.STAFF)) == [GROUP_STAFF]
    assert fan_out_groups(notification(audience=Audience.ALL)) == [GROUP_ALL]


# ---- dispatch_notification ---------------------------------------------------------------------


def test_dispatch_writes_one_delivery_per_recipient(people) -> None:
    row = notification(audience=Audience.ALL)
    before = timezone.now()
    result = dispatch_notification(row.pk)
    expected = pks(people["plain"] + people["staff"])

    assert result is not None
    assert result.id == row.pk
    assert result.recipient_count == len(expected)
    assert result.groups == [GROUP_ALL]
    assert result.expired is False
    assert result.audience == Audience.ALL
    assert result.notification["id"] == row.pk
    assert result.notification["read"] is False

    deliveries = Delivery.objects.filter(notification=row)
    assert sorted(d.user_id for d in deliveries) == expected
    assert {d.state for d in deliveries} == {DeliveryState.PENDING}
    row.refresh_from_db()
    assert row.dispatched_at is not None and row.dispatched_at >= before
    assert row.recipient_count == len(expected)


def test_dispatch_in_chunks_covers_everyone(settings) -> None:
    users = UserFactory.create_batch(7)
    row = notification(audience=Audience.ALL)
    with (
        override_settings(NOTIFICATIONS={**settings.NOTIFICATIONS, "CHUNK_SIZE": 3}),
        CaptureQueriesContext(connection) as queries,
    ):
        result = dispatch_notification(row.pk)
    assert result is not None
    assert result.recipient_count == 7
    delivery_table = Delivery._meta.db_table
    inserts = [
        q["sql"] for q in queries if q["sql"].startswith("INSERT") and delivery_table in q["sql"]
    ]
    assert len(inserts) == 3  # 3 + 3 + 1 users, each chunk one INSERT … SELECT
    assert sorted(Delivery.objects.values_list("user_id", flat=True)) == pks(users)


def test_second_dispatch_returns_none_and_creates_nothing(people) -> None:
    row = notification(audience=Audience.STAFF)
    assert dispatch_notification(row.pk) is not None
    row.refresh_from_db()
    first = (row.dispatched_at, row.recipient_count)
    deliveries = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))

    assert dispatch_notification(row.pk) is None
    assert dispatch_notification(row.pk, now=timezone.now() + timedelta(days=1)) is None
    row.refresh_from_db()
    assert (row.dispatched_at, row.recipient_count) == first
    assert list(Delivery.objects.order_by("pk").values_list("pk", flat=True)) == deliveries


def test_dispatch_of_missing_row_returns_none() -> None:
    assert dispatch_notification(987_654) is None


def test_scheduled_is_not_dispatched_until_due(people) -> None:
    publish_at = timezone.now() + timedelta(hours=1)
    row = notification(audience=Audience.ALL, publish_at=publish_at)
    assert dispatch_notification(row.pk) is None
    row.refresh_from_db()
    assert row.dispatched_at is None
    assert not Delivery.objects.exists()
    assert row.pk in Notification.objects.undispatched().values_list("pk", flat=True)

    due = publish_at + timedelta(seconds=1)
    result = dispatch_notification(row.pk, now=due)
    assert result is not None
    assert result.recipient_count == 4
    row.refresh_from_db()
    assert row.dispatched_at == due
    assert Delivery.objects.filter(notification=row).count() == 4


def test_expired_is_dispatched_to_nobody(people) -> None:
    row = notification(audience=Audience.ALL, expires_at=timezone.now() - timedelta(seconds=1))
    result = dispatch_notification(row.pk)
    assert result is not None
    assert result.expired is True
    assert result.recipient_count == 0
    assert result.groups == []
    row.refresh_from_db()
    assert row.dispatched_at is not None
    assert row.recipient_count == 0
    assert not Delivery.objects.exists()


def test_expiry_is_judged_at_dispatch_time(people) -> None:
    now = timezone.now()
    row = notification(
        audience=Audience.ALL,
        publish_at=now + timedelta(minutes=1),
        expires_at=now + timedelta(minutes=2),
    )
    result = dispatch_notification(row.pk, now=now + timedelta(minutes=3))
    assert result is not None
    assert result.expired is True
    assert not Delivery.objects.exists()


def test_recipient_without_active_account_counts_zero(people) -> None:
    row = notification(audience=Audience.USER, recipient=people["inactive"])
    result = dispatch_notification(row.pk)
    assert result is not None
    assert result.recipient_count == 0
    assert result.groups == [user_group(people["inactive"].pk)]
    assert not Delivery.objects.exists()


def test_dispatch_many_skips_duplicates_and_done_ones(people) -> None:
    first = notification(audience=Audience.STAFF)
    second = notification(audience=Audience.USER, recipient=people["plain"][0])
    scheduled = notification(publish_at=timezone.now() + timedelta(hours=1))
    results = dispatch_many([first.pk, second.pk, first.pk, scheduled.pk, 987_654])
    assert [result.id for result in results] == [first.pk, second.pk]
    assert dispatch_many([first.pk, second.pk]) == []
    assert Delivery.objects.count() == 3


# ---- sweep helpers -----------------------------------------------------------------------------


def test_due_notification_ids_oldest_first() -> None:
    now = timezone.now()
    a = notification()
    notification(dispatched_at=now)
    b = notification(publish_at=now - timedelta(minutes=1))
    notification(publish_at=now + timedelta(hours=1))
    c = notification()
    assert due_notification_ids() == [a.pk, b.pk, c.pk]
    assert due_notification_ids(limit=2) == [a.pk, b.pk]


def test_due_notification_ids_shrinks_as_dispatched(people) -> None:
    rows = [notification() for _ in range(3)]
    dispatch_notification(rows[0].pk)
    assert due_notification_ids() == [rows[1].pk, rows[2].pk]


def test_next_scheduled_at() -> None:
    now = timezone.now()
    assert next_scheduled_at() is None
    notification()
    notification(publish_at=now - timedelta(minutes=1))
    assert next_scheduled_at() is None
    later = notification(publish_at=now + timedelta(hours=2))
    soon = notification(publish_at=now + timedelta(minutes=10))
    notification(publish_at=now + timedelta(minutes=5), dispatched_at=now)
    assert next_scheduled_at() == soon.publish_at
    Notification.objects.filter(pk=soon.pk).update(dispatched_at=now)
    assert next_scheduled_at() == later.publish_at


# ---- batches ---------------------------------------------------------------------------------


def test_dispatch_batch_handles_one_user_and_broadcast_rows_together(people) -> None:
    alice, bob = people["plain"]
    for_alice = [notification(audience=Audience.USER, recipient=alice) for _ in range(3)]
    for_bob = notification(audience=Audience.USER, recipient=bob)
    for_inactive = notification(audience=Audience.USER, recipient=people["inactive"])
    expired = notification(
        audience=Audience.USER, recipient=bob, expires_at=timezone.now() - timedelta(seconds=1)
    )
    later = notification(
        audience=Audience.USER, recipient=bob, publish_at=timezone.now() + timedelta(hours=1)
    )
    to_staff = notification(audience=Audience.STAFF)
    ids = [n.pk for n in [*for_alice, for_bob, for_inactive, expired, later, to_staff]]

    results = {result.id: result for result in dispatch_batch([*ids, ids[0], 999_999])}

    assert set(results) == set(ids) - {later.pk}
    for n in for_alice:
        assert results[n.pk].groups == [user_group(alice.pk)]
        assert results[n.pk].recipient_count == 1
    assert results[for_inactive.pk].groups == []
    assert results[expired.pk].groups == []
    assert results[expired.pk].expired
    assert results[to_staff.pk].groups == [GROUP_STAFF]
    assert set(Delivery.objects.values_list("notification_id", "user_id")) == {
        *((n.pk, alice.pk) for n in for_alice),
        (for_bob.pk, bob.pk),
        *((to_staff.pk, user.pk) for user in people["staff"]),
    }
    counts = dict(Notification.objects.values_list("pk", "recipient_count"))
    assert counts[for_bob.pk] == 1
    assert counts[for_inactive.pk] == 0
    assert counts[to_staff.pk] == 2
    assert Notification.objects.filter(dispatched_at__isnull=True).get() == later


def test_dispatch_batch_twice_dispatches_nothing_twice(people) -> None:
    alice = people["plain"][0]
    ids = [notification(audience=Audience.USER, recipient=alice).pk for _ in range(5)]
    assert len(dispatch_batch(ids)) == 5
    assert dispatch_batch(ids) == []
    assert Delivery.objects.count() == 5


def test_dispatch_batch_uses_a_constant_number_of_queries(people) -> None:
    alice = people["plain"][0]
    few = [notification(audience=Audience.USER, recipient=alice).pk for _ in range(2)]
    many = [notification(audience=Audience.USER, recipient=alice).pk for _ in range(40)]
    with CaptureQueriesContext(connection) as small:
        dispatch_batch(few)
    with CaptureQueriesContext(connection) as large:
        dispatch_batch(many)
    assert len(large.captured_queries) == len(small.captured_queries)


# ---- broadcasts: claim, push, then record -----------------------------------------------------


def test_claim_broadcast_claims_once_and_writes_no_rows(people) -> None:
    row = notification(audience=Audience.ALL)
    claimed = claim_broadcast(row.pk)
    assert claimed is not None
    assert claimed.groups == [GROUP_ALL]
    assert claim_broadcast(row.pk) is None
    row.refresh_from_db()
    assert row.dispatched_at is not None
    assert row.recorded_at is None
    assert not Delivery.objects.filter(notification=row).exists()
    assert list(Notification.objects.unrecorded()) == [row]
    assert unrecorded_notification_ids() == [row.pk]


def test_record_broadcast_writes_every_row_once(people) -> None:
    row = notification(audience=Audience.STAFF)
    assert record_broadcast(row.pk) is None  # not claimed yet: nothing to record
    claim_broadcast(row.pk)
    assert record_broadcast(row.pk) == 2
    assert sorted(Delivery.objects.filter(notification=row).values_list("user_id", flat=True)) == (
        pks(people["staff"])
    )
    row.refresh_from_db()
    assert row.recorded_at is not None
    assert row.recipient_count == 2
    assert record_broadcast(row.pk) is None
    assert unrecorded_notification_ids() == []


def test_record_broadcast_counts_rows_written_ahead_of_it(people) -> None:
    """An ack in the window between push and record wrote one row already."""
    row = notification(audience=Audience.ALL)
    claim_broadcast(row.pk)
    Delivery.objects.create(notification=row, user=people["plain"][0], state=DeliveryState.READ)
    assert record_broadcast(row.pk) == 4
    assert Delivery.objects.get(notification=row, user=people["plain"][0]).state == "read"


def test_claim_expired_broadcast_records_it_empty(people) -> None:
    row = notification(audience=Audience.ALL, expires_at=timezone.now() - timedelta(seconds=1))
    claimed = claim_broadcast(row.pk)
    assert claimed is not None
    assert claimed.expired
    assert claimed.groups == []
    row.refresh_from_db()
    assert row.recorded_at is not None
    assert record_broadcast(row.pk) is None
    assert not Delivery.objects.filter(notification=row).exists()


def test_one_user_dispatch_is_recorded_in_the_same_transaction(people) -> None:
    row = notification(audience=Audience.USER, recipient=people["plain"][0])
    dispatch_batch([row.pk])
    row.refresh_from_db()
    assert row.recorded_at == row.dispatched_at
    assert unrecorded_notification_ids() == []


def test_record_audience_in_chunks_covers_everyone_once() -> None:
    users = UserFactory.create_batch(7)
    UserFactory(is_active=False)
    row = notification(audience=Audience.ALL)
    everyone = audience_queryset(row)
    assert deliveries_record_audience(row.pk, everyone, chunk_size=3) == 7
    assert deliveries_record_audience(row.pk, everyone, chunk_size=3) == 0
    assert sorted(Delivery.objects.filter(notification=row).values_list("user_id", flat=True)) == (
        pks(users)
    )


def test_deleting_a_notification_deletes_its_rows(people) -> None:
    row = notification(audience=Audience.ALL)
    dispatch_notification(row.pk)
    assert Delivery.objects.filter(notification_id=row.pk).count() == 4
    row.delete()
    assert not Delivery.objects.filter(notification_id=row.pk).exists()


def test_deleting_a_user_deletes_their_rows(people) -> None:
    user = people["plain"][0]
    dispatch_notification(notification(audience=Audience.ALL).pk)
    user_id = user.pk
    user.delete()
    assert not Delivery.objects.filter(user_id=user_id).exists()


def test_record_broadcast_in_small_chunks_counts_everyone(people, settings) -> None:
    from notifications import conf

    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "CHUNK_SIZE": 1}
    assert conf.get().CHUNK_SIZE == 1  # one user per transaction
    row = notification(audience=Audience.ALL)
    claim_broadcast(row.pk)
    assert record_broadcast(row.pk) == 4
    assert Delivery.objects.filter(notification=row).count() == 4


def test_a_recording_that_died_halfway_is_finished_by_the_next(people) -> None:
    row = notification(audience=Audience.ALL)
    claim_broadcast(row.pk)
    halfway = audience_queryset(row).filter(pk__in=pks(people["staff"]))
    deliveries_record_audience(row.pk, halfway, chunk_size=10)  # then the listener died
    assert unrecorded_notification_ids() == [row.pk]
    assert record_broadcast(row.pk) == 4
    assert Delivery.objects.filter(notification=row).count() == 4
    assert unrecorded_notification_ids() == []


def chunked(users: Any, chunk_size: int) -> list[list]:
    """The pks of each chunk of ``users``, in the order they are recorded."""
    from notifications.services import audience_chunks

    return [
        list(chunk.of(users).values_list("pk", flat=True))
        for chunk in audience_chunks(users, chunk_size)
    ]


def test_audience_chunks_follow_the_users_in_pk_order_and_skip_nothing() -> None:
    users = UserFactory.create_batch(6)
    users[2].delete()  # a gap in the ids changes nothing: chunks count users, not ids
    everyone = audience_queryset(notification(audience=Audience.ALL))
    chunks = chunked(everyone, chunk_size=2)
    assert [len(chunk) for chunk in chunks] == [2, 2, 1]  # ceil(5 / 2) chunks
    assert [pk for chunk in chunks for pk in chunk] == pks(users[:2] + users[3:])
    assert [len(chunk) for chunk in chunked(everyone, chunk_size=5)] == [5]  # exactly one
    assert [len(chunk) for chunk in chunked(everyone, chunk_size=100)] == [5]
    assert chunked(everyone.none(), chunk_size=2) == [[]]  # nobody: one empty chunk


def test_a_user_who_joins_mid_recording_is_in_exactly_one_chunk() -> None:
    from notifications.services import audience_chunks

    UserFactory.create_batch(3)
    everyone = audience_queryset(notification(audience=Audience.ALL))
    chunks = audience_chunks(everyone, chunk_size=2)
    first = next(chunks)
    newcomer = UserFactory()  # the highest pk: it belongs in the last chunk
    covered = [
        pk for chunk in [first, *chunks] for pk in chunk.of(everyone).values_list("pk", flat=True)
    ]
    assert covered.count(newcomer.pk) == 1
    assert len(covered) == 4


def delivery_inserts(queries: CaptureQueriesContext) -> int:
    table = Delivery._meta.db_table
    return sum(
        query["sql"].startswith("INSERT") and table in query["sql"]
        for query in queries.captured_queries
    )


def test_sparse_user_ids_record_a_small_broadcast_in_one_chunk() -> None:
    """Five staff whose ids lie millions apart: one chunk, not the id ranges between them."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    base = 10_000_000  # above any id the sequence hands out in a test run
    staff = [
        user_model.objects.create(id=base + k * 3_000_000, username=f"sparse{k}", is_staff=True)
        for k in range(5)
    ]
    user_model.objects.create(id=base + 1, username="sparse-plain")
    row = notification(audience=Audience.STAFF)
    claim_broadcast(row.pk)
    with CaptureQueriesContext(connection) as queries:
        assert record_broadcast(row.pk) == 5
    assert delivery_inserts(queries) == 1
    # The notification's state, the chunk's boundary lookup and INSERT, the count of those
    # who muted its category, the count: a handful of statements (ranges of 2,000 ids were
    # 6,000 transactions here).
    statements = [
        query["sql"]
        for query in queries.captured_queries
        if not query["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))
    ]
    assert len(statements) <= 9, statements
    assert sorted(Delivery.objects.filter(notification=row).values_list("user_id", flat=True)) == (
        pks(staff)
    )


def test_chunk_transactions_follow_the_audience_size(settings) -> None:
    from notifications import conf

    UserFactory.create_batch(5)
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "CHUNK_SIZE": 2}
    assert conf.get().CHUNK_SIZE == 2
    row = notification(audience=Audience.ALL)
    claim_broadcast(row.pk)
    with CaptureQueriesContext(connection) as queries:
        assert record_broadcast(row.pk) == 5
    assert delivery_inserts(queries) == 3  # ceil(5 / 2)
