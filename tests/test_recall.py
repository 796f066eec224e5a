"""Recall and edit: out of every list and count (kept for audit), or changed in place —
pushed to open sockets through the real Redis layer, and told to pages that were away."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.utils import timezone

import notifications
from notifications.dispatch import dispatch_notification
from notifications.models import Audience, Delivery, Notification
from notifications.selectors import missed_since, notification_page, unread_count
from tests.conftest import connect, receive_type
from tests.factories import UserFactory
from tests.test_admin import CHANGELIST
from tests.test_admin_compose import admin, superuser  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def sent(title: str = "Hello", **fields) -> Notification:
    notification = Notification.objects.create(title=title, **fields)
    dispatch_notification(notification.pk)
    notification.refresh_from_db()
    return notification


# ---- recall --------------------------------------------------------------------------------


def test_a_recalled_notification_leaves_lists_and_counts_and_stays_for_audit(user):
    admin_user = UserFactory(is_staff=True)
    kept = sent("Kept", audience=Audience.USER, recipient=user)
    gone = sent("Oops", audience=Audience.USER, recipient=user)
    assert unread_count(user) == 2
    assert notifications.recall(gone, by=admin_user) is True
    assert unread_count(user) == 1
    assert [n["id"] for n in notification_page(user).results] == [kept.pk]
    assert [n["id"] for n in missed_since(user, None).notifications] == [kept.pk]
    gone.refresh_from_db()
    assert gone.recalled_by == admin_user and gone.recalled_at is not None
    assert Delivery.objects.filter(notification=gone).exists()  # the record stays
    assert notifications.recall(gone) is False  # once


def test_hello_and_pong_do_not_name_a_recalled_notification(user):
    from notifications.handshake_sql import badge_state

    kept = sent("Kept", audience=Audience.USER, recipient=user)
    gone = sent("Oops", audience=Audience.USER, recipient=user)
    notifications.recall(gone)
    assert badge_state(user.pk) == (1, kept.pk)


def test_a_scheduled_notification_recalled_before_its_time_never_goes_out(user):
    notification = Notification.objects.create(
        title="Later",
        audience=Audience.USER,
        recipient=user,
        publish_at=timezone.now() + timedelta(seconds=1),
    )
    notifications.recall(notification)
    assert dispatch_notification(notification.pk, now=timezone.now() + timedelta(minutes=1)) is None
    assert not Delivery.objects.filter(notification=notification).exists()


# ---- edit ----------------------------------------------------------------------------------


def test_an_edit_changes_the_text_records_who_and_when_and_validates(user):
    notification = sent("Typo", audience=Audience.USER, recipient=user)
    assert notifications.edit(notification, by=user, title="Fixed", level="warning") == [
        "title",
        "level",
    ]
    notification.refresh_from_db()
    assert (notification.title, notification.level, notification.edited_by) == (
        "Fixed",
        "warning",
        user,
    )
    assert notifications.edit(notification, title="Fixed") == []  # nothing changed
    with pytest.raises(ValidationError):
        notifications.edit(notification, url="javascript:alert(1)")
    with pytest.raises(ValidationError):
        notifications.edit(notification, audience="all")
    notification.refresh_from_db()
    assert notification.url == ""


# ---- the admin -------------------------------------------------------------------------


def test_the_admin_recalls_selected_notifications(admin, superuser):  # noqa: F811
    notification = sent("Wrong audience", audience=Audience.ALL)
    chosen = {"action": "recall_selected", "_selected_action": [notification.pk]}
    asked = admin.post(CHANGELIST, chosen)
    # It cannot be undone: a confirmation first, naming what goes.
    assert asked.status_code == 200
    assert "Recall this notification?" in asked.content.decode()
    assert "Wrong audience" in asked.content.decode()
    notification.refresh_from_db()
    assert notification.recalled_at is None
    response = admin.post(CHANGELIST, {**chosen, "post": "yes"}, follow=True)
    assert "Recalled 1 notification" in response.content.decode()
    notification.refresh_from_db()
    assert notification.recalled_by == superuser
    listing = admin.get(CHANGELIST, {"state": "recalled"}).content.decode()
    assert "Wrong audience" in listing


# ---- through the layer ------------------------------------------------------------------


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_recall_and_edit_reach_open_sockets(listener):
    users = await sync_to_async(UserFactory.create_batch)(2)
    sockets = [(await connect(user))[0] for user in users]
    announcement = await sync_to_async(notifications.broadcast)("Wrong date", body="Friday")
    personal = await sync_to_async(notifications.notify)(users[0], "For you")
    for socket in sockets:
        await receive_type(socket, "notification")
    await receive_type(sockets[0], "notification")

    await sync_to_async(notifications.edit)(announcement, body="Saturday")
    for socket in sockets:
        frame = await receive_type(socket, "updated")
        assert frame["notification"]["id"] == announcement.pk
        assert frame["notification"]["body"] == "Saturday"
        assert "read" not in frame["notification"]  # content only: one frame for all

    await sync_to_async(notifications.recall)(announcement)
    for socket in sockets:
        assert await receive_type(socket, "recalled") == {
            "type": "recalled",
            "ids": [announcement.pk],
        }
    await sync_to_async(notifications.recall)(personal)
    # To one user's sockets the frame carries the count, as triage frames do.
    assert await receive_type(sockets[0], "recalled") == {
        "type": "recalled",
        "ids": [personal.pk],
        "unread": 0,
    }
    for socket in sockets:
        await socket.disconnect()


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_a_page_that_was_away_learns_of_recalls_and_edits_at_its_next_sync():
    user = await sync_to_async(UserFactory)()
    first = await sync_to_async(sent)("First", audience=Audience.USER, recipient=user)
    second = await sync_to_async(sent)("Second", audience=Audience.USER, recipient=user)
    third = await sync_to_async(sent)("Third", audience=Audience.USER, recipient=user)
    # Nobody was connected: both pushes went nowhere.
    await sync_to_async(notifications.recall)(second)
    await sync_to_async(notifications.edit)(first, title="First, corrected")
    socket, _ = await connect(user)
    await socket.send_json_to({"type": "sync", "since": third.pk})
    frame = await receive_type(socket, "missed")
    assert frame["recalled"] == [second.pk]
    assert [(n["id"], n["title"]) for n in frame["updated"]] == [(first.pk, "First, corrected")]
    # A fresh page (since null) gets the current list, nothing to correct.
    await socket.send_json_to({"type": "sync", "since": None})
    fresh = await receive_type(socket, "missed")
    assert "recalled" not in fresh and "updated" not in fresh
    assert [n["id"] for n in fresh["notifications"]] == [first.pk, third.pk]
    assert fresh["notifications"][0]["title"] == "First, corrected"
    await socket.disconnect()


# ---- pushes from synchronous code in a thread with a running event loop -----------------


def test_a_push_from_sync_code_runs_even_where_an_event_loop_runs():
    import asyncio

    from notifications.deadlines import push_from_sync

    done = []

    async def push(value):
        done.append(value)

    async def caller():
        push_from_sync(push, "inside", seconds=2)  # sync code, loop running in this thread

    push_from_sync(push, "plain", seconds=2)
    asyncio.run(caller())
    assert done == ["plain", "inside"]


def test_a_push_from_sync_code_gives_up_at_its_deadline():
    import asyncio
    import time

    from notifications.deadlines import push_from_sync

    async def never():
        await asyncio.sleep(1.5)  # long past the deadline (and then the thread ends)

    async def caller():
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            push_from_sync(never, seconds=0.2)
        return time.monotonic() - started

    assert asyncio.run(caller()) < 1.0
