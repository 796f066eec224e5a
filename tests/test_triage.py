"""Triage — Done, snooze, mark unread, seen — in the services, the lists and the badge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from notifications.events import FrameError, parse_client_frame, parse_snooze_until
from notifications.handshake_sql import badge_state
from notifications.models import Audience, Delivery, DeliveryState, Notification
from notifications.selectors import inbox_counts, inbox_page, missed_since, notification_page
from notifications.services import (
    deliveries_archive,
    deliveries_mark_read,
    deliveries_mark_seen,
    deliveries_mark_unread,
    deliveries_return_snoozed,
    deliveries_snooze,
    deliveries_unarchive,
    next_snooze_due_at,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def deliver(user: Any, count: int = 1, state: str = DeliveryState.DELIVERED) -> list[int]:
    ids = []
    for index in range(count):
        row = Notification.objects.create(
            title=f"n{index}",
            audience=Audience.ALL,
            dispatched_at=timezone.now(),
            recorded_at=timezone.now(),
        )
        Delivery.objects.create(notification=row, user=user, state=state)
        ids.append(row.pk)
    return ids


def row(user: Any, notification_id: int) -> Delivery:
    return Delivery.objects.get(user=user, notification_id=notification_id)


@pytest.fixture
def me():
    return UserFactory()


@pytest.fixture
def other():
    return UserFactory()


def later(minutes: int = 60) -> datetime:
    return timezone.now() + timedelta(minutes=minutes)


# ---- Done ------------------------------------------------------------------------------------


def test_archive_leaves_the_bell_and_the_count_and_stays_in_archived(me) -> None:
    ids = deliver(me, 3)
    result = deliveries_archive(me, ids[:2])
    assert result.kind == "archived"
    assert result.ids == sorted(ids[:2])
    assert result.unread == 1
    assert badge_state(me.pk)[0] == 1
    assert [n["id"] for n in notification_page(me).results] == [ids[2]]
    archived = notification_page(me, status="archived").results
    assert sorted(n["id"] for n in archived) == sorted(ids[:2])
    assert all(n["archived"] for n in archived)
    assert inbox_counts(me) == {"unread": 1, "archived": 2, "snoozed": 0}


def test_archive_twice_changes_nothing_the_second_time(me) -> None:
    (nid,) = deliver(me)
    assert deliveries_archive(me, [nid]).ids == [nid]
    assert deliveries_archive(me, [nid]).ids == []


def test_other_users_ids_are_ignored_and_not_named(me, other) -> None:
    mine, theirs = deliver(me), deliver(other)
    for verb in (deliveries_archive, deliveries_unarchive, deliveries_mark_unread):
        result = verb(me, theirs)
        assert result.ids == []
    assert deliveries_snooze(me, theirs, later()).ids == []
    assert row(other, theirs[0]).archived_at is None
    assert row(other, theirs[0]).snoozed_until is None
    assert deliveries_archive(me, mine + theirs).ids == mine


def test_unarchive_brings_it_back_as_it_was(me) -> None:
    unread, read = deliver(me), deliver(me, state=DeliveryState.READ)
    deliveries_archive(me, unread + read)
    result = deliveries_unarchive(me, unread + read)
    assert result.kind == "unarchived"
    assert result.ids == sorted(unread + read)
    assert result.unread == 1
    assert row(me, read[0]).state == DeliveryState.READ


def test_mark_unread_undoes_read_done_and_snooze(me) -> None:
    read = deliver(me, state=DeliveryState.READ)
    done = deliver(me)
    snoozed = deliver(me)
    deliveries_archive(me, done)
    deliveries_snooze(me, snoozed, later())
    assert badge_state(me.pk)[0] == 0
    result = deliveries_mark_unread(me, read + done + snoozed)
    assert result.kind == "unread"
    assert result.ids == sorted(read + done + snoozed)
    assert result.unread == 3
    back = row(me, read[0])
    assert (back.state, back.read_at) == (DeliveryState.DELIVERED, None)
    assert row(me, done[0]).archived_at is None
    assert row(me, snoozed[0]).snoozed_until is None


def test_mark_unread_keeps_a_pending_row_pending(me) -> None:
    (nid,) = deliver(me, state=DeliveryState.PENDING)
    deliveries_archive(me, [nid])
    deliveries_mark_unread(me, [nid])
    assert row(me, nid).state == DeliveryState.PENDING


def test_mark_unread_of_an_unread_row_changes_nothing(me) -> None:
    (nid,) = deliver(me)
    assert deliveries_mark_unread(me, [nid]).ids == []


# ---- snooze ----------------------------------------------------------------------------------


def test_snooze_hides_until_then_and_counts_again_when_due(me) -> None:
    ids = deliver(me, 2)
    until = later(30)
    result = deliveries_snooze(me, ids[:1], until)
    assert (result.kind, result.ids, result.unread, result.until) == ("snoozed", ids[:1], 1, until)
    assert [n["id"] for n in notification_page(me).results] == [ids[1]]
    (snoozed,) = notification_page(me, status="snoozed").results
    assert datetime.fromisoformat(snoozed["snoozed_until"]) == until
    assert [n["id"] for n in missed_since(me.pk, None).notifications] == [ids[1]]
    # Due, not yet brought back by a listener: it counts again already.
    Delivery.objects.filter(user=me, notification_id=ids[0]).update(
        snoozed_until=timezone.now() - timedelta(seconds=1)
    )
    assert badge_state(me.pk)[0] == 2
    assert notification_page(me, status="snoozed").results == []


def test_snooze_of_an_archived_row_changes_nothing(me) -> None:
    (nid,) = deliver(me)
    deliveries_archive(me, [nid])
    assert deliveries_snooze(me, [nid], later()).ids == []


def test_archive_ends_a_snooze(me) -> None:
    (nid,) = deliver(me)
    deliveries_snooze(me, [nid], later())
    deliveries_archive(me, [nid])
    assert row(me, nid).snoozed_until is None


def test_snooze_needs_an_aware_time(me) -> None:
    (nid,) = deliver(me)
    with pytest.raises(ValueError, match="aware"):
        deliveries_snooze(me, [nid], datetime(2030, 1, 1))


def test_due_snoozes_come_back_once_unread_and_in_order(me, other) -> None:
    first, second = deliver(me, 2, state=DeliveryState.READ)
    (theirs,) = deliver(other)
    (future,) = deliver(me)
    past = timezone.now() - timedelta(seconds=5)
    Delivery.objects.filter(notification_id=first).update(snoozed_until=past)
    Delivery.objects.filter(notification_id=second).update(
        snoozed_until=past + timedelta(1 / 86400)
    )
    Delivery.objects.filter(notification_id=theirs).update(snoozed_until=past)
    deliveries_snooze(me, [future], later(60))
    returned = deliveries_return_snoozed()
    assert [(r.user_id, r.notification.pk) for r in returned] == [
        (me.pk, first),
        (other.pk, theirs),
        (me.pk, second),
    ]
    assert row(me, first).state == DeliveryState.DELIVERED
    assert row(me, first).snoozed_until is None
    assert deliveries_return_snoozed() == []
    assert next_snooze_due_at() == row(me, future).snoozed_until


def test_an_expired_snooze_is_cleared_and_returned_to_no_one(me) -> None:
    (nid,) = deliver(me)
    Notification.objects.filter(pk=nid).update(expires_at=timezone.now() - timedelta(seconds=1))
    Delivery.objects.filter(notification_id=nid).update(
        snoozed_until=timezone.now() - timedelta(seconds=1)
    )
    assert deliveries_return_snoozed() == []
    assert row(me, nid).snoozed_until is None
    assert next_snooze_due_at() is None


# ---- seen ------------------------------------------------------------------------------------


def test_seen_is_recorded_the_first_time_only(me) -> None:
    (nid,) = deliver(me)
    assert deliveries_mark_seen(me, [nid]) == 1
    first = row(me, nid).seen_at
    assert first is not None
    assert deliveries_mark_seen(me, [nid]) == 0
    assert row(me, nid).seen_at == first


# ---- lists: dispatch order, views, levels --------------------------------------


def test_lists_are_in_arrival_order_not_creation_order(me) -> None:
    old = Notification.objects.create(title="scheduled long ago", audience=Audience.ALL)
    new = Notification.objects.create(title="created later", audience=Audience.ALL)
    Delivery.objects.create(notification=new, user=me)
    Delivery.objects.create(notification=old, user=me)  # dispatched last: newest arrival
    assert [n["id"] for n in notification_page(me).results] == [old.pk, new.pk]
    assert [d.notification_id for d in inbox_page(me).deliveries] == [old.pk, new.pk]
    page = notification_page(me, before=old.pk)
    assert [n["id"] for n in page.results] == [new.pk]


def test_inbox_page_views_levels_and_cursors(me) -> None:
    ids = deliver(me, 5)
    Notification.objects.filter(pk__in=ids[:2]).update(level="error")
    deliveries_mark_read(me, ids[:1])
    deliveries_archive(me, ids[4:])
    assert [d.notification_id for d in inbox_page(me, level="error").deliveries] == ids[1::-1]
    unread = inbox_page(me, status="unread")
    assert [d.notification_id for d in unread.deliveries] == [ids[3], ids[2], ids[1]]
    assert unread.counts == {"unread": 3, "archived": 1, "snoozed": 0}
    first = inbox_page(me, limit=2)
    assert [d.notification_id for d in first.deliveries] == [ids[3], ids[2]]
    assert first.older == ids[2] and first.newer is None
    second = inbox_page(me, limit=2, before=first.older)
    assert [d.notification_id for d in second.deliveries] == [ids[1], ids[0]]
    assert second.newer == ids[1]
    back = inbox_page(me, limit=2, after=second.newer)
    assert [d.notification_id for d in back.deliveries] == [ids[3], ids[2]]


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        notification_page(UserFactory(), status="deleted")


# ---- the frames' parsing ----------------------------------------------------------------


def test_triage_frames_parse() -> None:
    for kind in ("archive", "unarchive", "unread", "seen"):
        frame = parse_client_frame(f'{{"type": "{kind}", "ids": [3, 3, 4]}}', max_ids=10)
        assert (frame.type, frame.ids) == (kind, (3, 4))
    until = (timezone.now() + timedelta(hours=2)).isoformat()
    frame = parse_client_frame(f'{{"type": "snooze", "ids": [1], "until": "{until}"}}', max_ids=5)
    assert frame.until == datetime.fromisoformat(until)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "ISO 8601"),
        (12, "ISO 8601"),
        ("tomorrow", "ISO 8601"),
        ("2000-01-01T00:00:00Z", "future"),
        ("2999-01-01T00:00:00Z", "year"),
        ("x" * 100, "ISO 8601"),
    ],
)
def test_bad_snooze_times_are_refused(value: Any, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        parse_snooze_until(value)


def test_a_snooze_time_without_offset_is_in_the_users_zone() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    until = parse_snooze_until("2026-12-01T17:09", now=now, default_zone=ZoneInfo("Europe/Berlin"))
    assert until == datetime(2026, 12, 1, 16, 9, tzinfo=UTC)
