"""Save → Redis pub/sub → the real listener → channels-redis → a socket, end to end."""

import asyncio
import contextlib
import json
import logging
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from notifications import conf, events
from notifications.models import Delivery, Notification
from notifications.services import broadcast, notify
from tests.conftest import connect, receive_type
from tests.factories import GroupFactory, StaffFactory, UserFactory

pytestmark = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


@sync_to_async
def delivery_user_ids(notification):
    return set(Delivery.objects.filter(notification=notification).values_list("user_id", flat=True))


@sync_to_async
def refreshed(notification):
    notification.refresh_from_db()
    return notification


@sync_to_async
def recorded(notification):
    return Notification.objects.filter(pk=notification.pk, recorded_at__isnull=False).exists()


async def assert_nothing_more(communicator, user, listener=None):
    """Prove ``communicator`` got nothing more so far, without a window of silence.

    A quiet 0.3 s passes on a loaded machine whether or not the frame that must not come was
    merely late. Instead, frames that must come after it: with a listener running, two
    notifications to ``user`` through the whole pipeline, the second sent once the first
    arrived. The listener handles announcements in order and pushes a whole batch before it
    takes the next, so the second's push follows every push of anything announced before the
    first; layer events reach this process's sockets in the order they were sent. Without a
    listener, a marker straight to the user's group. The next frames must be those alone.
    """
    expected = []
    got = []

    async def until(notification_id):
        expected.append(notification_id)
        while not got or got[-1].get("notification", {}).get("id") != notification_id:
            got.append(await communicator.receive_json_from(timeout=10))

    if listener is not None:
        for title in ("barrier", "barrier after it"):
            await until((await sync_to_async(notify)(user, title)).pk)
    else:
        group = events.user_group(user.pk)
        marker = events.serialize_notification(
            await sync_to_async(Notification)(
                pk=987_654_321, title="mark", created_at=timezone.now()
            )
        )
        await get_channel_layer().group_send(group, events.layer_created_event(marker, group))
        await until(marker["id"])
    assert [frame.get("notification", {}).get("id") for frame in got] == expected, got


async def wait_until(predicate, timeout=10.0, interval=0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError("condition not met in time")


async def test_sweep_records_a_broadcast_pushed_but_never_recorded(transactional_db):
    """A listener died between push and record: the next one records it, pushing nothing."""
    from notifications.dispatch import claim_broadcast
    from notifications.listener import NotificationListener

    users = await sync_to_async(UserFactory.create_batch)(3)
    socket, _ = await connect(users[0])
    notification = await sync_to_async(broadcast)("Half done")  # nobody listens yet
    claimed = await sync_to_async(claim_broadcast)(notification.pk)
    assert claimed is not None
    assert not await recorded(notification)
    assert await sync_to_async(claim_broadcast)(notification.pk) is None  # claimed once
    await NotificationListener(once=True, handle_signals=False).run()
    assert await recorded(notification)
    assert await delivery_user_ids(notification) == {user.pk for user in users}
    assert (await refreshed(notification)).recipient_count == 3
    await assert_nothing_more(socket, users[0])
    await socket.disconnect()


async def test_user_notification_reaches_only_its_recipient(listener):
    alice, bob = await sync_to_async(UserFactory.create_batch)(2)
    alice_socket, _ = await connect(alice)
    bob_socket, _ = await connect(bob)
    notification = await sync_to_async(notify)(
        alice, "For Alice", body="b", level="warning", url="/posts/1/"
    )
    frame = await receive_type(alice_socket, "notification")
    await assert_nothing_more(bob_socket, bob, listener)
    assert await delivery_user_ids(notification) == {alice.pk}
    notification = await refreshed(notification)
    assert notification.dispatched_at is not None
    assert frame["notification"] == {
        "id": notification.pk,
        "title": "For Alice",
        "body": "b",
        "level": "warning",
        "category": "general",
        "critical": False,
        "group_key": "",
        "actor": None,
        "url": "/posts/1/",
        "created_at": notification.created_at.isoformat(),
        "dispatched_at": notification.dispatched_at.isoformat(),
        "read": False,
        "archived": False,
        "snoozed_until": None,
    }
    assert notification.recipient_count == 1
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_broadcast_to_all_reaches_every_socket_and_records_every_user(listener):
    users = await sync_to_async(UserFactory.create_batch)(5)
    inactive = await sync_to_async(UserFactory)(is_active=False)
    sockets = [(await connect(user))[0] for user in users[:3]]
    notification = await sync_to_async(broadcast)("Maintenance at noon", level="warning")
    for communicator in sockets:
        frame = await receive_type(communicator, "notification")
        assert frame["notification"]["id"] == notification.pk
    # Pushed first, recorded right after.
    await wait_until(lambda: recorded(notification))
    ids = await delivery_user_ids(notification)
    assert ids == {user.pk for user in users}
    assert inactive.pk not in ids
    assert (await refreshed(notification)).recipient_count == 5
    for communicator in sockets:
        await communicator.disconnect()


async def test_staff_broadcast_reaches_staff_only(listener):
    staff = await sync_to_async(StaffFactory)()
    plain = await sync_to_async(UserFactory)()
    staff_socket, _ = await connect(staff)
    plain_socket, _ = await connect(plain)
    notification = await sync_to_async(broadcast)("Deploy tonight", audience="staff")
    assert (await receive_type(staff_socket, "notification"))["notification"]["id"] == (
        notification.pk
    )
    await wait_until(lambda: recorded(notification))  # recorded after every push
    await assert_nothing_more(plain_socket, plain, listener)
    assert await delivery_user_ids(notification) == {staff.pk}
    await staff_socket.disconnect()
    await plain_socket.disconnect()


async def test_group_broadcast_reaches_members_only(listener):
    group = await sync_to_async(GroupFactory)()
    member, outsider = await sync_to_async(UserFactory.create_batch)(2)
    await sync_to_async(member.groups.add)(group)
    member_socket, _ = await connect(member)
    outsider_socket, _ = await connect(outsider)
    notification = await sync_to_async(broadcast)("Team lunch", audience="group", group=group)
    assert (await receive_type(member_socket, "notification"))["notification"]["id"] == (
        notification.pk
    )
    await wait_until(lambda: recorded(notification))  # recorded after every push
    await assert_nothing_more(outsider_socket, outsider, listener)
    assert await delivery_user_ids(notification) == {member.pk}
    await member_socket.disconnect()
    await outsider_socket.disconnect()


async def test_a_second_run_of_the_same_notification_creates_and_pushes_nothing(
    listener, redis_client
):
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    notification = await sync_to_async(notify)(user, "Once")
    await receive_type(communicator, "notification")
    # The same announcement again, through Redis, and straight into the listener.
    channel = conf.get().CHANNEL
    redis_client.publish(channel, json.dumps({"v": 1, "event": "created", "id": notification.pk}))
    assert await listener.handle_ids([notification.pk]) == 0
    await assert_nothing_more(communicator, user, listener)
    assert await sync_to_async(Delivery.objects.filter(notification=notification).count)() == 1
    await communicator.disconnect()


async def test_malformed_pubsub_messages_are_logged_and_skipped(listener, redis_client, caplog):
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    channel = conf.get().CHANNEL
    with caplog.at_level(logging.WARNING, logger="notifications.listener"):
        for junk in (
            b"not json",
            b'{"v": 2, "event": "created", "id": 1}',
            b'{"v": 1}',
            b'{"v": 1, "event": "created", "id": 999999999}',
        ):
            redis_client.publish(channel, junk)
        notification = await sync_to_async(notify)(user, "Still alive")
        frame = await receive_type(communicator, "notification")
    assert frame["notification"]["id"] == notification.pk
    assert "malformed" in caplog.text
    await communicator.disconnect()


async def test_rolled_back_notification_is_never_published_or_delivered(listener):
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)

    @sync_to_async
    def create_then_roll_back():
        with pytest.raises(RuntimeError), transaction.atomic():
            notify(user, "Never happened")
            raise RuntimeError("roll back")

    await create_then_roll_back()
    await listener.sweep()
    await assert_nothing_more(communicator, user, listener)
    assert not await sync_to_async(Notification.objects.filter(title="Never happened").exists)()
    await communicator.disconnect()


async def test_publish_waits_for_commit(listener, redis_client):
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    channel = conf.get().CHANNEL
    watcher = redis_client.pubsub(ignore_subscribe_messages=True)
    watcher.subscribe(channel)
    watcher.get_message(timeout=1)  # the subscribe confirmation

    def next_message(timeout: float):
        """The next message on the channel that is not the listener's own probe."""
        deadline = time.monotonic() + timeout
        while message := watcher.get_message(timeout=max(deadline - time.monotonic(), 0.01)):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                if json.loads(message["data"]).get("event") == "probe":
                    continue
            return message
        return None

    @sync_to_async
    def create_inside_a_transaction():
        with transaction.atomic():
            notification = notify(user, "Committed later")
            # Nothing may be published while the row is invisible to the listener. Redis
            # delivers one channel's messages in order: a marker published now must arrive
            # first, before anything the save would have published (no quiet window).
            redis_client.publish(channel, b"barrier")
            first = next_message(5)
            assert first is not None and first["data"] == b"barrier", first
        return notification

    notification = await create_inside_a_transaction()
    message = next_message(5)
    assert json.loads(message["data"]) == {"v": 1, "event": "created", "id": notification.pk}
    frame = await receive_type(communicator, "notification")
    assert frame["notification"]["id"] == notification.pk
    watcher.close()
    await communicator.disconnect()


async def test_saved_while_redis_is_unreachable_is_delivered_by_the_sweep(listener, caplog):
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    unreachable = {**settings.NOTIFICATIONS, "REDIS_URL": "redis://127.0.0.1:1/0"}
    with (
        caplog.at_level(logging.WARNING, logger="notifications.publisher"),
        override_settings(NOTIFICATIONS=unreachable),
    ):
        started = asyncio.get_running_loop().time()
        notification = await sync_to_async(notify)(user, "Saved during an outage")
        elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 3, "a save must not hang while Redis is down"
    assert "Could not publish" in caplog.text
    # Publishing failed, but the row is committed: the listener's sweep finds it.
    frame = await receive_type(communicator, "notification", timeout=10)
    assert frame["notification"]["id"] == notification.pk
    await communicator.disconnect()


async def test_scheduled_notification_is_held_until_due(listener):
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    publish_at = timezone.now() + timedelta(seconds=2)
    notification = await sync_to_async(notify)(user, "Later", publish_at=publish_at)
    assert await communicator.receive_nothing(timeout=1.0)
    assert (await refreshed(notification)).dispatched_at is None
    frame = await receive_type(communicator, "notification", timeout=10)
    assert frame["notification"]["id"] == notification.pk
    assert timezone.now() >= publish_at
    await communicator.disconnect()


async def test_expired_before_dispatch_is_not_pushed(listener):
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)

    @sync_to_async
    def create_expired():
        notification = Notification(
            title="Too late",
            recipient=user,
            audience="user",
            publish_at=timezone.now() - timedelta(minutes=2),
            expires_at=timezone.now() - timedelta(minutes=1),
        )
        notification.save()
        return notification

    notification = await create_expired()
    await wait_until(lambda: _dispatched(notification))
    await assert_nothing_more(communicator, user, listener)
    assert await delivery_user_ids(notification) == set()
    await communicator.disconnect()


@sync_to_async
def _dispatched(notification):
    notification.refresh_from_db()
    return notification.dispatched_at is not None


async def test_ack_read_and_sync_after_a_live_push(listener):
    user = await sync_to_async(UserFactory)()
    tab1, _ = await connect(user)
    tab2, _ = await connect(user)
    first = await sync_to_async(notify)(user, "First")
    await receive_type(tab1, "notification")
    await receive_type(tab2, "notification")
    await tab1.send_json_to({"type": "ack", "ids": [first.pk]})
    await tab1.send_json_to({"type": "read", "ids": [first.pk]})
    assert await receive_type(tab2, "read") == {"type": "read", "ids": [first.pk], "unread": 0}
    await tab2.disconnect()
    second = await sync_to_async(notify)(user, "While tab 2 was away")
    await receive_type(tab1, "notification")
    tab2, hello = await connect(user)
    assert hello == {"type": "hello", "unread": 1, "last_id": second.pk}
    await tab2.send_json_to({"type": "sync", "since": first.pk})
    missed = await receive_type(tab2, "missed")
    assert [n["id"] for n in missed["notifications"]] == [second.pk]
    delivery = await sync_to_async(Delivery.objects.get)(notification=first, user=user)
    assert delivery.state == "read"
    assert delivery.delivered_at is not None
    assert delivery.read_at is not None
    await tab1.disconnect()
    await tab2.disconnect()
