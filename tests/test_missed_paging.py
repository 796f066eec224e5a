"""A sync answer always fits a frame and always says where the next page starts.

Grouping lists a group by its head only, so a capped page (MAX_SYNC rows) can list far fewer
entries, or none: clients cannot tell it was capped from the list. And MAX_SYNC entries with
long bodies outgrow the 64 KiB frame daphne will send. The server says where to go on.
"""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from notifications import conf
from notifications.events import fit_missed_frame, missed_frame
from notifications.models import Audience, Delivery, Notification
from notifications.selectors import missed_since
from tests.factories import UserFactory


def entry(i: int, body: str = "") -> dict:
    return {"id": i, "title": f"n{i}", "body": body, "read": False}


def size(frame: dict) -> int:
    return len(json.dumps(frame, separators=(",", ":")).encode())


def test_a_frame_that_fits_is_left_alone():
    frame = missed_frame([entry(1), entry(2)], cursor=2, unread=2, updated=[{"id": 1}])
    assert fit_missed_frame(frame, 64 * 1024, after=0) is frame


def test_an_answer_to_a_since_keeps_its_oldest_and_says_where_to_go_on():
    entries = [entry(i, "x" * 1000) for i in range(1, 201)]
    frame = missed_frame(entries, cursor=150, unread=200, updated=[{"id": 3, "title": "t"}])
    fitted = fit_missed_frame(frame, 64 * 1024, after=0)
    assert size(fitted) <= 64 * 1024
    kept = [n["id"] for n in fitted["notifications"]]
    assert kept == list(range(1, len(kept) + 1)) and 40 < len(kept) < 200
    assert fitted["next"] == kept[-1]
    assert fitted["cursor"] == 0  # the cursor does not pass what was left out
    assert "updated" not in fitted  # the next page's answer brings them again
    assert fitted["unread"] == 200


def test_a_first_page_keeps_its_newest():
    entries = [entry(i, "x" * 1000) for i in range(1, 201)]
    fitted = fit_missed_frame(missed_frame(entries, cursor=None), 64 * 1024, after=None)
    kept = [n["id"] for n in fitted["notifications"]]
    assert kept[-1] == 200 and kept == sorted(kept) and size(fitted) <= 64 * 1024
    assert "next" not in fitted


def test_an_entry_too_big_for_any_frame_is_passed_over():
    fitted = fit_missed_frame(missed_frame([entry(7, "x" * 70_000)], 0), 64 * 1024, after=0)
    assert fitted["notifications"] == [] and fitted["next"] == 7


@pytest.mark.django_db
def test_a_capped_page_of_one_group_says_where_the_next_page_starts():
    user = UserFactory()
    limit = conf.get().MAX_SYNC
    now = timezone.now()
    first = Notification.objects.create(
        title="before", recipient=user, audience=Audience.USER, dispatched_at=now
    )
    Delivery.objects.create(notification=first, user=user)
    burst = Notification.objects.bulk_create(
        Notification(
            title=f"c{i}",
            recipient=user,
            audience=Audience.USER,
            dispatched_at=now,
            group_key="post:1",
        )
        for i in range(limit + 5)
    )
    Delivery.objects.bulk_create(Delivery(notification=n, user=user) for n in burst)

    page = missed_since(user, first.pk)
    assert page.notifications == []  # every row of the page is an older member of one item
    assert page.next == burst[limit - 1].pk
    rest = missed_since(user, page.next)
    assert [n["id"] for n in rest.notifications] == [burst[-1].pk]
    assert rest.notifications[0]["group_count"] == limit + 5
    assert rest.next is None
