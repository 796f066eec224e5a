"""Verbs "as one" over a socket: the real ASGI stack and the real Redis layer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from notifications.models import Audience, Delivery, Notification
from tests.conftest import connect, receive_type
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def deliver(user, key: str = "", actor: str = "") -> int:
    notification = Notification.objects.create(
        title="c",
        audience=Audience.ALL,
        group_key=key,
        actor_name=actor,
        dispatched_at=timezone.now(),
        recorded_at=timezone.now(),
    )
    Delivery.objects.create(notification=notification, user=user, state="delivered")
    return notification.pk


async def test_hello_counts_a_group_once_and_a_grouped_read_tells_every_tab():
    owner, other = await sync_to_async(UserFactory.create_batch)(2)
    item = [await deliver(owner, "post:1", name) for name in ("Ana", "Bo", "Cy")]
    plain = await deliver(owner)
    theirs = await deliver(other, "post:1", "Ana")
    tab1, hello = await connect(owner)
    tab2, _ = await connect(owner)
    assert hello["unread"] == 2
    await tab1.send_json_to({"type": "read", "ids": [item[-1], theirs], "group": True})
    expected = {"type": "read", "ids": item, "unread": 1}
    assert await receive_type(tab1, "read") == expected
    assert await receive_type(tab2, "read") == expected
    await tab2.send_json_to({"type": "archive", "ids": [item[0]], "group": True})
    archived = await receive_type(tab1, "archived")
    assert archived == {"type": "archived", "ids": item, "unread": 1}
    await tab1.send_json_to({"type": "unarchive", "ids": [item[1]], "group": True})
    assert (await receive_type(tab2, "unarchived"))["ids"] == item
    await tab1.send_json_to({"type": "archive", "ids": [plain]})
    assert (await receive_type(tab2, "archived"))["ids"] == [plain]
    await tab1.send_json_to({"type": "ping"})
    assert (await receive_type(tab1, "pong"))["unread"] == 0
    await tab1.send_json_to({"type": "sync", "since": None})
    missed = await receive_type(tab1, "missed")
    assert [(n["id"], n["group_count"]) for n in missed["notifications"]] == [(item[-1], 3)]
    assert missed["notifications"][0]["group_actors"] == ["Cy", "Bo", "Ana"]
    for tab in (tab1, tab2):
        await tab.disconnect()


async def test_a_bad_group_flag_is_an_error_frame_and_changes_nothing():
    owner = await sync_to_async(UserFactory)()
    item = [await deliver(owner, "k", name) for name in ("Ana", "Bo")]
    tab, _ = await connect(owner)
    await tab.send_json_to({"type": "read", "ids": [item[0]], "group": "yes"})
    error = await receive_type(tab, "error")
    assert error["code"] == "invalid_group"
    await tab.send_json_to({"type": "ping"})
    assert (await receive_type(tab, "pong"))["unread"] == 1
    await tab.disconnect()
