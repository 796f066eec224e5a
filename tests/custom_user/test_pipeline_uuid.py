"""UUID users, live: save → Redis pub/sub → the real listener → channels-redis → their sockets."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async

from notifications.dispatch import dispatch_batch
from notifications.models import Delivery, DeliveryState, Notification
from notifications.services import broadcast, deliveries_mark_read, notify
from tests.conftest import connect, receive_type
from tests.factories import GroupFactory, StaffFactory, UserFactory
from tests.test_pipeline import assert_nothing_more, delivery_user_ids, recorded, wait_until

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


@sync_to_async
def state_of(notification: Notification, user) -> str:
    return Delivery.objects.get(notification=notification, user=user).state


async def test_hello_counts_a_uuid_users_unread_and_last_id() -> None:
    """Through the real ASGI app (origin check, session, preload): the handshake that was a 500."""

    @sync_to_async
    def history(user):
        first, second = notify(user, "One"), notify(user, "Two")
        dispatch_batch([first.pk, second.pk])
        deliveries_mark_read(user, [first.pk])
        return second

    user = await sync_to_async(UserFactory)()
    assert isinstance(user.pk, uuid.UUID)
    newest = await history(user)
    socket, hello = await connect(user)
    assert hello == {"type": "hello", "unread": 1, "last_id": newest.pk}
    await socket.send_json_to({"type": "ping"})
    pong = await receive_type(socket, "pong")
    assert (pong["unread"], pong["last_id"]) == (1, newest.pk)
    await socket.disconnect()


async def test_notify_reaches_only_the_uuid_recipient(listener) -> None:
    alice, bob = await sync_to_async(UserFactory.create_batch)(2)
    alice_socket, _ = await connect(alice)
    bob_socket, _ = await connect(bob)
    notification = await sync_to_async(notify)(alice, "For Alice")
    frame = await receive_type(alice_socket, "notification")
    assert frame["notification"]["id"] == notification.pk
    await assert_nothing_more(bob_socket, bob, listener)
    assert await delivery_user_ids(notification) == {alice.pk}
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_broadcasts_write_exactly_their_rows_and_push_to_their_sockets(listener) -> None:
    plain = await sync_to_async(UserFactory.create_batch)(2)
    staff = await sync_to_async(StaffFactory.create_batch)(2)
    inactive = await sync_to_async(UserFactory)(is_active=False)
    group = await sync_to_async(GroupFactory)()
    members = [plain[0], staff[1]]
    for member in members:
        await sync_to_async(member.groups.add)(group)
    sockets = {user.pk: (await connect(user))[0] for user in [*plain, *staff]}

    for audience, reached in (("all", plain + staff), ("staff", staff), ("group", members)):
        notification = await sync_to_async(broadcast)(
            f"To {audience}", audience=audience, group=group if audience == "group" else None
        )
        for user in reached:
            frame = await receive_type(sockets[user.pk], "notification")
            assert frame["notification"]["id"] == notification.pk
        await wait_until(lambda n=notification: recorded(n))  # recorded after every push
        for user in [*plain, *staff]:
            if user not in reached:
                await assert_nothing_more(sockets[user.pk], user, listener)
        rows = await delivery_user_ids(notification)
        assert rows == {user.pk for user in reached}, audience
        assert inactive.pk not in rows
    for socket in sockets.values():
        await socket.disconnect()


async def test_ack_read_and_sync_over_the_socket(listener) -> None:
    user = await sync_to_async(UserFactory)()
    first_tab, _ = await connect(user)
    second_tab, _ = await connect(user)
    notification = await sync_to_async(notify)(user, "Hi")
    await receive_type(first_tab, "notification")
    await receive_type(second_tab, "notification")

    await first_tab.send_json_to({"type": "ack", "ids": [notification.pk]})

    async def delivered() -> bool:
        return await state_of(notification, user) == DeliveryState.DELIVERED

    await wait_until(delivered)

    await first_tab.send_json_to({"type": "read", "ids": [notification.pk]})
    for tab in (first_tab, second_tab):  # every tab of the user hears it, by the user's group
        frame = await receive_type(tab, "read")
        assert (frame["ids"], frame["unread"]) == ([notification.pk], 0)
    assert await state_of(notification, user) == DeliveryState.READ

    await second_tab.send_json_to({"type": "sync", "since": None})
    missed = await receive_type(second_tab, "missed")
    assert [(n["id"], n["read"]) for n in missed["notifications"]] == [(notification.pk, True)]

    await first_tab.send_json_to({"type": "read_all"})
    assert (await receive_type(first_tab, "read"))["unread"] == 0
    await first_tab.disconnect()
    await second_tab.disconnect()
