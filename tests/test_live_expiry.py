"""Expiry, live: the listener wakes at a notification's expiry and tells every open bell."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from notifications.services import broadcast, notification_expire, notify
from tests.conftest import connect, receive_type
from tests.factories import UserFactory

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


async def test_a_notification_leaves_open_bells_at_its_expiry(listener):
    user = await sync_to_async(UserFactory)()
    socket, _ = await connect(user)
    expires = timezone.now() + timedelta(seconds=1.5)
    notification = await sync_to_async(notify)(user, "Flash sale", expires_at=expires)
    assert (await receive_type(socket, "notification"))["notification"]["id"] == notification.pk
    frame = await receive_type(socket, "expired", timeout=10)
    late = (timezone.now() - expires).total_seconds()
    assert frame == {"type": "expired", "ids": [notification.pk]}
    assert late >= -0.05, f"told {-late:.2f} s before the expiry"  # (how soon after: bench)
    await socket.disconnect()


async def test_expire_now_reaches_a_broadcasts_sockets_at_once(listener):
    users = await sync_to_async(UserFactory.create_batch)(2)
    sockets = [(await connect(user))[0] for user in users]
    notification = await sync_to_async(broadcast)("Maintenance tonight")
    for socket in sockets:
        await receive_type(socket, "notification")
    assert await sync_to_async(notification_expire)(notification)
    for socket in sockets:
        frame = await receive_type(socket, "expired", timeout=10)
        assert frame["ids"] == [notification.pk]
    for socket in sockets:
        await socket.disconnect()
