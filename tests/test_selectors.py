"""Selectors: unread counts, the newest-first page, and what a socket missed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from notifications.models import Audience, Delivery, DeliveryState, Notification
from notifications.selectors import (
    badge_state,
    missed_since,
    notification_page,
    unread_count,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def deliver(user: Any, count: int = 1, state: str = DeliveryState.PENDING, **fields: Any) -> list:
    """Create ``count`` notifications, each delivered to ``user``; return their ids in order."""
    ids = []
    for index in range(count):
        row = Notification.objects.create(
            **{"title": f"n{index}", "audience": Audience.ALL, **fields}
        )
        Delivery.objects.create(notification=row, user=user, state=state)
        ids.append(row.pk)
    return ids


def ids_of(results: Any) -> list[int]:
    items = results.notifications if hasattr(results, "notifications") else results
    return [item["id"] for item in items]


@pytest.fixture
def me():
    return UserFactory()


@pytest.fixture
def other():
    return UserFactory()


# ---- unread_count / badge_state -----------------------------------------------------------


def test_unread_count_counts_pending_and_delivered(me) -> None:
    deliver(me, 2, DeliveryState.PENDING)
    deliver(me, 3, DeliveryState.DELIVERED)
    deliver(me, 4, DeliveryState.READ)
    assert unread_count(me) == 5


def test_unread_count_excludes_expired(me) -> None:
    now = timezone.now()
    deliver(me, 1)
    deliver(me, 1, expires_at=now - timedelta(seconds=1))
    deliver(me, 1, expires_at=now + timedelta(hours=1))
    assert unread_count(me) == 2


def test_unread_count_is_per_user(me, other) -> None:
    deliver(other, 3)
    assert unread_count(me) == 0
    deliver(me, 1)
    assert unread_count(me) == 1
    assert unread_count(me.pk) == 1


def test_last_id_is_the_users_newest_delivery(me, other) -> None:
    assert badge_state(me) == (0, None)
    mine = deliver(me, 3)
    deliver(other, 2)  # newer, but not mine
    assert badge_state(me) == (3, max(mine))


# ---- notification_page ---------------------------------------------------------------------


def test_page_is_newest_first_with_unread_count(me) -> None:
    ids = deliver(me, 3)
    read = deliver(me, 1, DeliveryState.READ)
    page = notification_page(me)
    assert ids_of(page.results) == sorted([*ids, *read], reverse=True)
    assert page.unread == 3
    assert page.next is None
    flags = {item["id"]: item["read"] for item in page.results}
    assert flags == {ids[0]: False, ids[1]: False, ids[2]: False, read[0]: True}


def test_page_items_are_serialized(me) -> None:
    row = Notification.objects.create(
        title="T", body="B", level="warning", url="/x/", audience=Audience.ALL
    )
    Delivery.objects.create(notification=row, user=me)
    (item,) = notification_page(me).results
    assert item == {
        "id": row.pk,
        "title": "T",
        "body": "B",
        "level": "warning",
        "category": "general",
        "critical": False,
        "group_key": "",
        "actor": None,
        "url": "/x/",
        "created_at": row.created_at.isoformat(),
        "dispatched_at": None,
        "read": False,
        "archived": False,
        "snoozed_until": None,
        # A list entry is an item: an ungrouped one is an item of one.
        "group_count": 1,
        "group_actors": [],
        "group_actor_count": 0,
    }


def test_page_unread_filter(me) -> None:
    unread = deliver(me, 2) + deliver(me, 1, DeliveryState.DELIVERED)
    deliver(me, 2, DeliveryState.READ)
    page = notification_page(me, unread_only=True)
    assert ids_of(page.results) == sorted(unread, reverse=True)
    assert all(item["read"] is False for item in page.results)


def test_page_excludes_expired(me) -> None:
    live = deliver(me, 1)
    deliver(me, 1, expires_at=timezone.now() - timedelta(seconds=1))
    assert ids_of(notification_page(me).results) == live


def test_page_cursor(me) -> None:
    ids = sorted(deliver(me, 5), reverse=True)
    first = notification_page(me, limit=2)
    assert ids_of(first.results) == ids[:2]
    assert first.next == ids[1]
    second = notification_page(me, limit=2, before=first.next)
    assert ids_of(second.results) == ids[2:4]
    assert second.next == ids[3]
    last = notification_page(me, limit=2, before=second.next)
    assert ids_of(last.results) == ids[4:]
    assert last.next is None


def test_next_is_none_when_the_page_is_exactly_full(me) -> None:
    deliver(me, 3)
    assert notification_page(me, limit=3).next is None
    assert notification_page(me, limit=2).next is not None


def test_before_an_id_not_delivered(me) -> None:
    ids = deliver(me, 3)
    page = notification_page(me, before=ids[1])
    assert ids_of(page.results) == [ids[0]]
    assert notification_page(me, before=ids[0]).results == []


def test_cursor_with_unread_filter(me) -> None:
    older_unread = deliver(me, 2)
    deliver(me, 2, DeliveryState.READ)
    newer_unread = deliver(me, 2)
    first = notification_page(me, unread_only=True, limit=3)
    assert ids_of(first.results) == [newer_unread[1], newer_unread[0], older_unread[1]]
    second = notification_page(me, unread_only=True, limit=3, before=first.next)
    assert ids_of(second.results) == [older_unread[0]]
    assert second.next is None


def test_limit_is_capped_by_max_sync(me, settings) -> None:
    ids = deliver(me, 5)
    with override_settings(NOTIFICATIONS={**settings.NOTIFICATIONS, "MAX_SYNC": 3}):
        page = notification_page(me, limit=1000)
    assert ids_of(page.results) == sorted(ids, reverse=True)[:3]
    assert page.next is not None


@pytest.mark.parametrize("limit", [0, -5])
def test_limit_is_at_least_one(me, limit: int) -> None:
    deliver(me, 2)
    assert len(notification_page(me, limit=limit).results) == 1


def test_page_never_shows_another_users_rows(me, other) -> None:
    mine = deliver(me, 2)
    theirs = deliver(other, 3)
    page = notification_page(me, limit=100)
    assert ids_of(page.results) == sorted(mine, reverse=True)
    assert page.unread == 2
    assert notification_page(me, before=max(theirs) + 1).results
    assert not set(ids_of(notification_page(me, before=max(theirs) + 1).results)) & set(theirs)


def test_shared_notification_read_state_is_per_user(me, other) -> None:
    row = Notification.objects.create(title="All", audience=Audience.ALL)
    Delivery.objects.create(notification=row, user=me, state=DeliveryState.READ)
    Delivery.objects.create(notification=row, user=other, state=DeliveryState.PENDING)
    assert notification_page(me).results[0]["read"] is True
    assert notification_page(other).results[0]["read"] is False


# ---- missed_since --------------------------------------------------------------------------


def test_missed_since_is_oldest_first_after_since(me) -> None:
    ids = deliver(me, 5)
    assert ids_of(missed_since(me, ids[1])) == ids[2:]
    assert missed_since(me, ids[-1]).notifications == []


def test_missed_since_zero_is_everything(me) -> None:
    ids = deliver(me, 3)
    assert ids_of(missed_since(me, 0)) == ids


def test_missed_since_includes_read_rows_with_flag(me) -> None:
    first = deliver(me, 1, DeliveryState.READ)
    second = deliver(me, 1)
    missed = missed_since(me, 0).notifications
    assert [(item["id"], item["read"]) for item in missed] == [
        (first[0], True),
        (second[0], False),
    ]


def test_missed_since_excludes_expired(me) -> None:
    ids = deliver(me, 1)
    deliver(me, 1, expires_at=timezone.now() - timedelta(seconds=1))
    assert ids_of(missed_since(me, 0)) == ids


def test_missed_since_is_capped_oldest_first(me, settings) -> None:
    ids = deliver(me, 5)
    with override_settings(NOTIFICATIONS={**settings.NOTIFICATIONS, "MAX_SYNC": 2}):
        assert ids_of(missed_since(me, ids[0])) == ids[1:3]


def test_missed_since_none_gives_newest_max_sync_oldest_first(me, settings) -> None:
    ids = deliver(me, 5)
    with override_settings(NOTIFICATIONS={**settings.NOTIFICATIONS, "MAX_SYNC": 3}):
        assert ids_of(missed_since(me, None)) == ids[2:]
    assert ids_of(missed_since(me, None)) == ids


def test_missed_since_never_shows_another_users_rows(me, other) -> None:
    mine = deliver(me, 1)
    theirs = deliver(other, 2)
    more_mine = deliver(me, 1)
    assert ids_of(missed_since(me, 0)) == [*mine, *more_mine]
    assert ids_of(missed_since(me, None)) == [*mine, *more_mine]
    assert not set(ids_of(missed_since(me, mine[0]))) & set(theirs)


def test_the_sync_cursor_stops_before_rows_that_have_not_settled(me, settings) -> None:
    """A row younger than SYNC_SETTLE_SECONDS is returned but the cursor stays before it:
    on PostgreSQL a row with a lower id may still become visible below it."""
    from datetime import timedelta

    from django.utils import timezone

    ids = deliver(me, 4)
    old = timezone.now() - timedelta(minutes=5)
    Delivery.objects.filter(user=me, notification_id__in=ids[:2]).update(created_at=old)
    missed = missed_since(me, None)
    assert ids_of(missed) == ids
    assert missed.cursor == ids[1]  # the last settled one
    again = missed_since(me, missed.cursor)
    assert ids_of(again) == ids[2:]  # the young ones come back until they settle
    assert again.cursor == ids[1]
    Delivery.objects.filter(user=me).update(created_at=old)
    assert missed_since(me, ids[1]).cursor == ids[-1]
    assert missed_since(me, ids[-1]).cursor == ids[-1]


def test_an_empty_first_sync_reads_from_the_start_next_time(me) -> None:
    missed = missed_since(me, None)
    assert missed.notifications == []
    assert missed.cursor == 0
