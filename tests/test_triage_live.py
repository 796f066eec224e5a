"""Triage through the real pipeline: sockets, the channel layer, Redis and the listener."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from notifications.models import Delivery
from notifications.services import notify
from tests.conftest import connect, receive_type
from tests.factories import UserFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def two_tabs_with_one_notification(listener):
    user = await sync_to_async(UserFactory)()
    tab1, _ = await connect(user)
    tab2, _ = await connect(user)
    notification = await sync_to_async(notify)(user, "Review requested")
    await receive_type(tab1, "notification")
    await receive_type(tab2, "notification")
    return user, tab1, tab2, notification


async def test_archive_unarchive_and_unread_reach_every_tab(listener):
    user, tab1, tab2, notification = await two_tabs_with_one_notification(listener)
    ids = [notification.pk]
    await tab1.send_json_to({"type": "archive", "ids": ids})
    for tab in (tab1, tab2):
        assert await receive_type(tab, "archived") == {"type": "archived", "ids": ids, "unread": 0}
    await tab2.send_json_to({"type": "unarchive", "ids": ids})
    for tab in (tab1, tab2):
        assert await receive_type(tab, "unarchived") == {
            "type": "unarchived",
            "ids": ids,
            "unread": 1,
        }
    await tab1.send_json_to({"type": "read", "ids": ids})
    await receive_type(tab2, "read")
    await tab1.send_json_to({"type": "unread", "ids": ids})
    for tab in (tab1, tab2):
        assert await receive_type(tab, "unread") == {"type": "unread", "ids": ids, "unread": 1}
    await tab1.send_json_to({"type": "seen", "ids": ids})
    # Seen marks are written a second later, with the process's others (seen.py).
    for _ in range(60):
        row = await sync_to_async(Delivery.objects.get)(notification=notification, user=user)
        if row.seen_at is not None:
            break
        await asyncio.sleep(0.05)
    assert row.seen_at is not None
    await tab1.disconnect()
    await tab2.disconnect()


async def test_a_bad_snooze_frame_gets_an_error_and_the_socket_stays(listener):
    _user, tab1, tab2, notification = await two_tabs_with_one_notification(listener)
    await tab1.send_json_to({"type": "snooze", "ids": [notification.pk], "until": "later"})
    error = await receive_type(tab1, "error")
    assert error["code"] == "invalid_until"
    await tab1.send_json_to({"type": "ping"})
    assert (await receive_type(tab1, "pong"))["unread"] == 1
    await tab1.disconnect()
    await tab2.disconnect()


async def test_a_snooze_comes_back_live_on_time_with_no_other_event(listener):
    """The listener wakes at the snooze's end (told by the snooze itself), not at a sweep."""
    user, tab1, tab2, notification = await two_tabs_with_one_notification(listener)
    until = timezone.now() + timedelta(seconds=1.5)
    await tab1.send_json_to(
        {"type": "snooze", "ids": [notification.pk], "until": until.isoformat()}
    )
    for tab in (tab1, tab2):
        frame = await receive_type(tab, "snoozed")
        assert (frame["ids"], frame["unread"]) == ([notification.pk], 0)
    hello = (await connect(user))[1]
    assert hello["unread"] == 0
    back = await receive_type(tab2, "notification", timeout=10)
    late = time.time() - until.timestamp()
    assert back["notification"]["id"] == notification.pk
    assert -0.05 < late < 1.0, f"came back {late:.3f} s after its time"
    await receive_type(tab1, "notification")
    row = await sync_to_async(Delivery.objects.get)(notification=notification, user=user)
    assert row.snoozed_until is None
    assert row.state != "read"
    await tab1.disconnect()
    await tab2.disconnect()


async def test_an_api_archive_reaches_the_open_sockets(listener):
    user, tab1, tab2, notification = await two_tabs_with_one_notification(listener)

    def post() -> int:
        client = Client()
        client.force_login(user)
        return client.post(
            "/notifications/api/archive/",
            data=f'{{"ids": [{notification.pk}]}}',
            content_type="application/json",
        ).status_code

    assert await sync_to_async(post)() == 200
    for tab in (tab1, tab2):
        frame = await receive_type(tab, "archived")
        assert frame["ids"] == [notification.pk]
    await asyncio.gather(tab1.disconnect(), tab2.disconnect())
