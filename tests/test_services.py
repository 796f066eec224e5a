"""Services: notify(), broadcast(), and recording/marking deliveries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from notifications import broadcast, notify
from notifications.models import Audience, Delivery, DeliveryState, Level, Notification
from notifications.services import (
    deliveries_mark_all_read,
    deliveries_mark_delivered,
    deliveries_mark_read,
    deliveries_record,
    notification_create,
)
from tests.factories import GroupFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_publish(django_capture_on_commit_callbacks):
    """Keep the publish hook from running; the callbacks list fills when the test ends."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        yield callbacks


def notification(**fields: Any) -> Notification:
    return Notification.objects.create(**{"title": "Hi", "audience": Audience.ALL, **fields})


def delivered(user: Any, count: int, state: str = DeliveryState.PENDING, **fields: Any) -> list:
    """Create ``count`` notifications delivered to ``user`` in ``state``; return their ids."""
    ids = []
    for _ in range(count):
        row = notification(**fields)
        Delivery.objects.create(notification=row, user=user, state=state)
        ids.append(row.pk)
    return ids


def states(user: Any) -> dict[int, str]:
    return dict(Delivery.objects.filter(user=user).values_list("notification_id", "state"))


# ---- notify() / broadcast() ---------------------------------------------------------------


def test_notify_returns_saved_notification() -> None:
    user = UserFactory()
    result = notify(user, "Build passed", body="All green", level=Level.SUCCESS, url="/builds/1/")
    assert isinstance(result, Notification)
    saved = Notification.objects.get(pk=result.pk)
    assert saved.audience == Audience.USER
    assert saved.recipient == user
    assert saved.group is None
    assert (saved.title, saved.body, saved.level, saved.url) == (
        "Build passed",
        "All green",
        "success",
        "/builds/1/",
    )
    assert saved.dispatched_at is None
    assert saved.recipient_count == 0


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "//evil.com", "data:text/html,x", "/a b", "ftp://x/"]
)
def test_notify_rejects_bad_url(url: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        notify(UserFactory(), "Hi", url=url)
    assert "url" in excinfo.value.message_dict
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"level": "fatal"}, "level"),
    ],
)
def test_notify_rejects_bad_fields(kwargs: dict[str, Any], field: str) -> None:
    fields = {"title": "Hi", **kwargs}
    with pytest.raises(ValidationError) as excinfo:
        notify(UserFactory(), **fields)
    assert field in excinfo.value.message_dict
    assert not Notification.objects.exists()


def test_notify_without_recipient_is_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        notify(None, "Hi")
    assert "recipient" in excinfo.value.message_dict


def test_notify_schedule_and_expiry() -> None:
    publish_at = timezone.now() + timedelta(hours=1)
    result = notify(UserFactory(), "Later", publish_at=publish_at)
    assert result.is_scheduled
    with pytest.raises(ValidationError) as excinfo:
        notify(UserFactory(), "Bad", publish_at=publish_at, expires_at=publish_at)
    assert "expires_at" in excinfo.value.message_dict


def test_broadcast_defaults_to_everyone() -> None:
    result = broadcast("Maintenance tonight")
    saved = Notification.objects.get(pk=result.pk)
    assert saved.audience == Audience.ALL
    assert saved.recipient is None
    assert saved.group is None


def test_broadcast_to_staff_and_group() -> None:
    staff = broadcast("Staff only", audience=Audience.STAFF, created_by=StaffFactory())
    assert Notification.objects.get(pk=staff.pk).audience == Audience.STAFF
    group = GroupFactory()
    to_group = broadcast("Team", audience=Audience.GROUP, group=group)
    assert Notification.objects.get(pk=to_group.pk).group == group


def test_broadcast_to_group_needs_group() -> None:
    with pytest.raises(ValidationError) as excinfo:
        broadcast("Team", audience=Audience.GROUP)
    assert "group" in excinfo.value.message_dict
    assert not Notification.objects.exists()


def test_broadcast_to_all_refuses_group() -> None:
    with pytest.raises(ValidationError) as excinfo:
        broadcast("All", audience=Audience.ALL, group=GroupFactory())
    assert "group" in excinfo.value.message_dict


def test_broadcast_cannot_target_one_user() -> None:
    with pytest.raises(ValidationError) as excinfo:
        broadcast("Hi", audience=Audience.USER)
    assert "recipient" in excinfo.value.message_dict


def test_broadcast_rejects_bad_url() -> None:
    with pytest.raises(ValidationError) as excinfo:
        broadcast("Hi", url="javascript:alert(1)")
    assert "url" in excinfo.value.message_dict


def test_notification_create_none_body_and_url_become_empty() -> None:
    result = notification_create(title="Hi", audience=Audience.ALL, body=None, url=None)
    saved = Notification.objects.get(pk=result.pk)
    assert (saved.body, saved.url) == ("", "")


def test_each_created_notification_registers_one_publish(django_capture_on_commit_callbacks):
    user = UserFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notify(user, "One")
        broadcast("Two")
    assert len(callbacks) == 2


# ---- deliveries_record -------------------------------------------------------------------


def test_record_creates_pending_rows() -> None:
    users = UserFactory.create_batch(3)
    row = notification()
    assert deliveries_record(row.pk, [user.pk for user in users]) == 3
    deliveries = Delivery.objects.filter(notification=row)
    assert sorted(d.user_id for d in deliveries) == sorted(user.pk for user in users)
    assert {d.state for d in deliveries} == {DeliveryState.PENDING}
    assert all(d.delivered_at is None and d.read_at is None for d in deliveries)


def test_record_is_idempotent_and_leaves_existing_rows_alone() -> None:
    users = UserFactory.create_batch(3)
    row = notification()
    ids = [user.pk for user in users]
    deliveries_record(row.pk, ids)
    Delivery.objects.filter(user=users[0]).update(state=DeliveryState.READ)
    before = list(Delivery.objects.order_by("pk").values_list("pk", "user_id", "state"))
    deliveries_record(row.pk, ids)
    deliveries_record(row.pk, ids[:1])
    assert list(Delivery.objects.order_by("pk").values_list("pk", "user_id", "state")) == before


def test_record_adds_only_the_missing_rows() -> None:
    users = UserFactory.create_batch(4)
    row = notification()
    deliveries_record(row.pk, [users[0].pk, users[1].pk])
    deliveries_record(row.pk, [user.pk for user in users])
    assert Delivery.objects.filter(notification=row).count() == 4


def test_record_nothing() -> None:
    assert deliveries_record(notification().pk, []) == 0
    assert not Delivery.objects.exists()


def test_record_bulk_5000() -> None:
    user_model = get_user_model()
    user_model.objects.bulk_create(user_model(username=f"bulk{i}") for i in range(5000))
    ids = list(user_model.objects.filter(username__startswith="bulk").values_list("pk", flat=True))
    assert len(ids) == 5000
    row = notification()
    deliveries_record(row.pk, ids)
    assert Delivery.objects.filter(notification=row).count() == 5000
    deliveries_record(row.pk, ids)
    assert Delivery.objects.filter(notification=row).count() == 5000
    assert Delivery.objects.count() == 5000


# ---- deliveries_mark_delivered -----------------------------------------------------------


def test_mark_delivered_moves_pending_to_delivered() -> None:
    user = UserFactory()
    ids = delivered(user, 3)
    assert deliveries_mark_delivered(user, ids[:2]) == 2
    assert states(user) == {
        ids[0]: DeliveryState.DELIVERED,
        ids[1]: DeliveryState.DELIVERED,
        ids[2]: DeliveryState.PENDING,
    }
    rows = Delivery.objects.filter(user=user, notification_id__in=ids[:2])
    assert all(row.delivered_at is not None for row in rows)


def test_mark_delivered_twice_changes_nothing() -> None:
    user = UserFactory()
    ids = delivered(user, 1)
    deliveries_mark_delivered(user, ids)
    first = Delivery.objects.get(user=user).delivered_at
    assert deliveries_mark_delivered(user, ids) == 0
    assert Delivery.objects.get(user=user).delivered_at == first


def test_mark_delivered_never_downgrades_read() -> None:
    user = UserFactory()
    ids = delivered(user, 1, state=DeliveryState.READ)
    assert deliveries_mark_delivered(user, ids) == 0
    assert states(user) == {ids[0]: DeliveryState.READ}


def test_mark_delivered_ignores_another_users_ids() -> None:
    me, other = UserFactory(), UserFactory()
    theirs = delivered(other, 2)
    mine = delivered(me, 1)
    assert deliveries_mark_delivered(me, [*theirs, *mine, 999_999]) == 1
    assert set(states(other).values()) == {DeliveryState.PENDING}
    assert Delivery.objects.get(user=other, notification_id=theirs[0]).delivered_at is None


def test_mark_delivered_empty_and_duplicates() -> None:
    user = UserFactory()
    ids = delivered(user, 1)
    assert deliveries_mark_delivered(user, []) == 0
    assert deliveries_mark_delivered(user, [ids[0], ids[0]]) == 1


def test_mark_delivered_accepts_user_id() -> None:
    # The consumer passes the user's primary key, not the user object.
    user = UserFactory()
    ids = delivered(user, 1)
    assert deliveries_mark_delivered(user.pk, ids) == 1


# ---- deliveries_mark_read / deliveries_mark_all_read ----------------------------------------


def test_mark_read_returns_changed_ids_and_unread_count() -> None:
    user = UserFactory()
    ids = delivered(user, 4)
    result = deliveries_mark_read(user, [ids[2], ids[0]])
    assert result.ids == sorted([ids[0], ids[2]])
    assert result.unread == 2
    assert states(user)[ids[0]] == DeliveryState.READ
    assert states(user)[ids[1]] == DeliveryState.PENDING


def test_mark_read_sets_read_at_and_delivered_at() -> None:
    user = UserFactory()
    ids = delivered(user, 1)
    before = timezone.now()
    deliveries_mark_read(user, ids)
    row = Delivery.objects.get(user=user)
    assert row.state == DeliveryState.READ
    assert row.read_at is not None and row.read_at >= before
    assert row.delivered_at is not None and row.delivered_at >= before


def test_mark_read_keeps_earlier_delivered_at() -> None:
    user = UserFactory()
    ids = delivered(user, 1)
    acked_at = timezone.now() - timedelta(minutes=5)
    Delivery.objects.update(state=DeliveryState.DELIVERED, delivered_at=acked_at)
    result = deliveries_mark_read(user, ids)
    assert result.ids == ids
    row = Delivery.objects.get(user=user)
    assert row.delivered_at == acked_at
    assert row.read_at > acked_at


def test_mark_read_twice_reports_nothing_changed() -> None:
    user = UserFactory()
    ids = delivered(user, 2)
    deliveries_mark_read(user, ids[:1])
    read_at = Delivery.objects.get(notification_id=ids[0]).read_at
    result = deliveries_mark_read(user, ids[:1])
    assert result.ids == []
    assert result.unread == 1
    assert Delivery.objects.get(notification_id=ids[0]).read_at == read_at


def test_mark_read_ignores_another_users_ids() -> None:
    me, other = UserFactory(), UserFactory()
    theirs = delivered(other, 2)
    mine = delivered(me, 2)
    result = deliveries_mark_read(me, [*theirs, mine[0], 999_999])
    assert result.ids == [mine[0]]
    assert result.unread == 1
    assert set(states(other).values()) == {DeliveryState.PENDING}
    assert not Delivery.objects.filter(user=other, read_at__isnull=False).exists()


def test_mark_read_of_shared_notification_touches_only_own_row() -> None:
    me, other = UserFactory(), UserFactory()
    row = notification()
    deliveries_record(row.pk, [me.pk, other.pk])
    assert deliveries_mark_read(me, [row.pk]).ids == [row.pk]
    assert states(me) == {row.pk: DeliveryState.READ}
    assert states(other) == {row.pk: DeliveryState.PENDING}


def test_mark_read_nothing() -> None:
    user = UserFactory()
    delivered(user, 2)
    result = deliveries_mark_read(user, [])
    assert (result.ids, result.unread) == ([], 2)


def test_unread_count_after_read_excludes_expired() -> None:
    user = UserFactory()
    ids = delivered(user, 2)
    delivered(user, 1, expires_at=timezone.now() - timedelta(minutes=1))
    assert deliveries_mark_read(user, ids[:1]).unread == 1


def test_mark_all_read() -> None:
    me, other = UserFactory(), UserFactory()
    pending = delivered(me, 2)
    acked = delivered(me, 1, state=DeliveryState.DELIVERED)
    already = delivered(me, 1, state=DeliveryState.READ)
    theirs = delivered(other, 2)
    result = deliveries_mark_all_read(me)
    assert result.ids == sorted([*pending, *acked])
    assert already[0] not in result.ids
    assert result.unread == 0
    assert set(states(me).values()) == {DeliveryState.READ}
    assert set(states(other).values()) == {DeliveryState.PENDING}
    assert (
        not Delivery.objects.filter(user=me, read_at__isnull=True)
        .exclude(notification_id__in=already)
        .exists()
    )
    assert deliveries_mark_all_read(other).ids == sorted(theirs)


def test_mark_all_read_when_nothing_unread() -> None:
    user = UserFactory()
    result = deliveries_mark_all_read(user)
    assert (result.ids, result.unread) == ([], 0)


# ---- the window between a broadcast's push and its recording ----------------------------------


@pytest.fixture
def in_flight():
    """A group broadcast pushed (claimed) but whose rows are not written yet."""
    from notifications.dispatch import claim_broadcast

    member, outsider = UserFactory(), UserFactory()
    group = GroupFactory()
    member.groups.add(group)
    row = notification(audience=Audience.GROUP, group=group)
    assert claim_broadcast(row.pk) is not None
    return row, member, outsider


def test_ack_in_the_window_writes_the_row_as_delivered(in_flight) -> None:
    row, member, outsider = in_flight
    assert deliveries_mark_delivered(member, [row.pk]) == 1
    assert states(member) == {row.pk: DeliveryState.DELIVERED}
    assert deliveries_mark_delivered(outsider, [row.pk]) == 0  # not theirs: nothing written
    assert states(outsider) == {}


def test_read_in_the_window_is_not_lost(in_flight) -> None:
    row, member, outsider = in_flight
    assert deliveries_mark_read(member, [row.pk]).ids == [row.pk]
    assert states(member) == {row.pk: DeliveryState.READ}
    assert deliveries_mark_read(outsider, [row.pk]).ids == []
    assert states(outsider) == {}


def test_read_all_in_the_window_includes_the_broadcast(in_flight) -> None:
    from notifications.dispatch import record_broadcast

    row, member, outsider = in_flight
    assert deliveries_mark_all_read(member).ids == [row.pk]
    assert deliveries_mark_all_read(outsider).ids == []
    assert record_broadcast(row.pk) == 1  # the recording keeps the read row and counts it
    assert states(member) == {row.pk: DeliveryState.READ}


def test_expired_broadcast_in_the_window_gets_no_row(in_flight) -> None:
    row, member, _outsider = in_flight
    Notification.objects.filter(pk=row.pk).update(expires_at=timezone.now())
    assert deliveries_mark_read(member, [row.pk]).ids == []
    assert states(member) == {}
