"""NotificationConsumer through the project's real ASGI stack and the real Redis layer."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from notifications import events
from notifications.batching import ACK_WINDOW
from notifications.events import GROUP_FIELDS
from notifications.models import Delivery, DeliveryState, Notification
from notifications.services import deliveries_record
from tests.conftest import connect, open_socket, receive_type
from tests.factories import NOTIFICATION_FIELDS, GroupFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def delivered_notification(user, title="Hi", read=False):
    """A notification already dispatched to ``user`` (as the listener would leave it)."""
    notification = Notification.objects.create(title=title, recipient=user, audience="user")
    deliveries_record(notification.pk, [user.pk])
    Notification.objects.filter(pk=notification.pk).update(dispatched_at=notification.created_at)
    if read:
        Delivery.objects.filter(notification=notification).update(state=DeliveryState.READ)
    return notification


@sync_to_async
def state_of(notification, user):
    return Delivery.objects.get(notification=notification, user=user).state


async def assert_still_open(communicator):
    await communicator.send_json_to({"type": "ping"})
    assert (await receive_type(communicator, "pong"))["type"] == "pong"


BARRIER_ID = 987_654_321


async def push_barrier(user) -> dict:
    """Push a marker to ``user``'s group over the layer; return the frame it becomes."""
    group = events.user_group(user.pk)
    payload = events.serialize_notification(
        await sync_to_async(Notification)(pk=BARRIER_ID, title="barrier", created_at=_now())
    )
    await get_channel_layer().group_send(group, events.layer_created_event(payload, group))
    return events.notification_frame(payload)


async def assert_nothing_before_barrier(communicator, user):
    """Prove ``communicator`` got nothing so far, without a timed window of silence.

    Layer events reach this process's sockets in the order they were sent (one hub, one
    channel, handled one at a time), so a marker pushed now arrives after anything the layer
    carried before: it must be the very next frame. On a loaded machine a 0.3 s quiet window
    passes whether or not the frame that must not come was merely late.
    """
    barrier = await push_barrier(user)
    frame = await communicator.receive_json_from(timeout=5)
    assert frame == barrier, f"a frame came before the barrier: {frame}"


async def test_anonymous_socket_is_accepted_then_closed_with_4401():
    communicator = await open_socket(None)
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize("origin", ["http://evil.example", "null", None])
async def test_foreign_missing_or_null_origin_is_refused_before_accept(origin):
    user = await sync_to_async(UserFactory)()
    communicator = await open_socket(user, origin=origin)
    connected, _ = await communicator.connect()
    assert not connected


async def test_hello_carries_unread_count_and_last_id():
    user = await sync_to_async(UserFactory)()
    await delivered_notification(user, "read one", read=True)
    newest = await delivered_notification(user, "unread one")
    communicator, hello = await connect(user)
    assert hello == {"type": "hello", "unread": 1, "last_id": newest.pk}
    await communicator.disconnect()


async def test_a_push_during_the_handshake_waits_for_hello(monkeypatch):
    """Hello is the first frame even when a push reaches the socket before it is accepted."""
    from notifications.fanout import LocalHub

    user = await sync_to_async(UserFactory)()
    joined = LocalHub.join_many
    payload = {
        "id": 7,
        "title": "Early",
        "body": "",
        "level": "info",
        "url": "",
        "created_at": "2026-01-01T00:00:00+00:00",
        "read": False,
    }

    async def push_right_after_joining(hub, groups, member):
        await joined(hub, groups, member)
        group = events.user_group(user.pk)
        await hub.fan_out(events.layer_created_event(payload, group))

    monkeypatch.setattr(LocalHub, "join_many", push_right_after_joining)
    communicator = await open_socket(user)
    assert (await communicator.connect(timeout=5))[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    frame = await communicator.receive_json_from(timeout=5)
    assert frame == {"type": "notification", "notification": payload}
    await communicator.disconnect()


async def test_a_handshake_makes_one_database_call(monkeypatch):
    """Session, user, groups, unread count and last id: one trip through the thread pool."""
    from notifications import consumers

    calls = []
    original = consumers.aconnect_state

    async def counted(user_id):
        calls.append(user_id)
        return await original(user_id)

    monkeypatch.setattr(consumers, "aconnect_state", counted)
    group = await sync_to_async(GroupFactory)()
    user = await sync_to_async(UserFactory)()
    await sync_to_async(user.groups.add)(group)
    newest = await delivered_notification(user, "unread one")
    communicator, hello = await connect(user)
    assert hello == {"type": "hello", "unread": 1, "last_id": newest.pk}
    assert calls == []  # preloaded by the middleware, in its one call
    # ... and the auth group came with it: the socket is in the group's layer group.
    group_name = events.auth_group_group(group.pk)
    await get_channel_layer().group_send(
        group_name, events.layer_read_event([newest.pk], 0, group_name)
    )
    assert (await receive_type(communicator, "read"))["ids"] == [newest.pk]
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"no": "type"}', "invalid_frame"),
        ('{"type": "subscribe", "group": "notifications.all"}', "unknown_type"),
        ('{"type": "ack", "ids": "1,2"}', "invalid_ids"),
        ('{"type": "read", "ids": [1, "2"]}', "invalid_ids"),
        ('{"type": "read", "ids": [true]}', "invalid_ids"),
        ('{"type": "sync", "since": "yesterday"}', "invalid_since"),
        (json.dumps({"type": "read", "ids": list(range(1, 600))}), "too_many_ids"),
    ],
)
async def test_malformed_frames_get_error_frames_and_the_socket_stays_open(frame, code):
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    await communicator.send_to(text_data=frame)
    error = await receive_type(communicator, "error")
    assert error["code"] == code
    assert error["detail"]
    await assert_still_open(communicator)
    await communicator.disconnect()


async def test_binary_frame_gets_an_error_frame():
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await receive_type(communicator, "error"))["code"] == "binary_frame"
    await communicator.disconnect()


async def test_frame_over_64_kib_closes_with_4413():
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    await communicator.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 70_000}))
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4413}


async def test_flooding_socket_closes_with_4429_and_other_users_are_unaffected():
    flooder, bystander = await sync_to_async(UserFactory.create_batch)(2)
    noisy, _ = await connect(flooder)
    calm, _ = await connect(bystander)
    for _ in range(200):
        await noisy.send_json_to({"type": "ping"})
    outputs = []
    while True:
        output = await noisy.receive_output(timeout=2)
        outputs.append(output)
        if output["type"] == "websocket.close":
            break
    assert outputs[-1]["code"] == 4429
    assert len(outputs) - 1 < 200  # throttled well before the 200th frame
    await assert_still_open(calm)
    await calm.disconnect()


async def test_ack_marks_only_own_pending_deliveries_delivered():
    owner, other = await sync_to_async(UserFactory.create_batch)(2)
    mine = await delivered_notification(owner)
    theirs = await delivered_notification(other)
    communicator, _ = await connect(owner)
    await communicator.send_json_to({"type": "ack", "ids": [mine.pk, theirs.pk]})
    await assert_still_open(communicator)
    # Acks are written in a batch after ACK_WINDOW, holding no frame of the socket up.
    deadline = asyncio.get_running_loop().time() + 5
    while await state_of(mine, owner) != DeliveryState.DELIVERED:
        assert asyncio.get_running_loop().time() < deadline, "the ack was never written"
        await asyncio.sleep(0.02)
    await asyncio.sleep(ACK_WINDOW * 2)  # a batch that changed theirs would be done too
    assert await state_of(theirs, other) == DeliveryState.PENDING
    await communicator.disconnect()


async def test_read_is_echoed_to_every_socket_of_the_user_and_ignores_others_ids():
    owner, other = await sync_to_async(UserFactory.create_batch)(2)
    first = await delivered_notification(owner)
    await delivered_notification(owner)
    theirs = await delivered_notification(other)
    tab1, _ = await connect(owner)
    tab2, _ = await connect(owner)
    stranger, _ = await connect(other)
    await tab1.send_json_to({"type": "read", "ids": [first.pk, theirs.pk]})
    expected = {"type": "read", "ids": [first.pk], "unread": 1}
    assert await receive_type(tab1, "read") == expected
    assert await receive_type(tab2, "read") == expected
    await assert_nothing_before_barrier(stranger, other)
    assert await state_of(theirs, other) == DeliveryState.PENDING
    for communicator in (tab1, tab2, stranger):
        await communicator.disconnect()


async def test_read_of_nothing_answers_only_the_asking_socket():
    user = await sync_to_async(UserFactory)()
    await delivered_notification(user)
    tab1, _ = await connect(user)
    tab2, _ = await connect(user)
    await tab1.send_json_to({"type": "read", "ids": [999_999]})
    assert await receive_type(tab1, "read") == {"type": "read", "ids": [], "unread": 1}
    await assert_nothing_before_barrier(tab2, user)
    await tab1.disconnect()
    await tab2.disconnect()


async def test_read_whose_echo_the_layer_cannot_carry_still_answers_the_reading_socket(
    monkeypatch,
):
    """A silent Redis times the echo out: the read is recorded, this socket is told directly."""
    from notifications import consumers

    async def silent_layer(user_id, result, layer=None):
        raise TimeoutError

    user = await sync_to_async(UserFactory)()
    first = await delivered_notification(user)
    communicator, _ = await connect(user)
    monkeypatch.setattr(consumers, "apush_read", silent_layer)
    await communicator.send_json_to({"type": "read", "ids": [first.pk]})
    frame = await communicator.receive_json_from(timeout=5)  # no error frame before it
    assert frame == {"type": "read", "ids": [first.pk], "unread": 0}
    assert await state_of(first, user) == DeliveryState.READ
    await assert_still_open(communicator)
    await communicator.disconnect()


async def test_read_all_marks_everything_read():
    user = await sync_to_async(UserFactory)()
    a = await delivered_notification(user)
    b = await delivered_notification(user)
    communicator, hello = await connect(user)
    assert hello["unread"] == 2
    await communicator.send_json_to({"type": "read_all"})
    assert await receive_type(communicator, "read") == {
        "type": "read",
        "ids": [a.pk, b.pk],
        "unread": 0,
    }
    assert await state_of(a, user) == DeliveryState.READ
    await communicator.disconnect()


async def test_sync_returns_what_was_missed_oldest_first_and_only_the_users():
    user, other = await sync_to_async(UserFactory.create_batch)(2)
    seen = await delivered_notification(user, "seen")
    await delivered_notification(other, "not yours")
    missed1 = await delivered_notification(user, "missed 1")
    missed2 = await delivered_notification(user, "missed 2", read=True)
    communicator, _ = await connect(user)
    await communicator.send_json_to({"type": "sync", "since": seen.pk})
    frame = await receive_type(communicator, "missed")
    assert [n["id"] for n in frame["notifications"]] == [missed1.pk, missed2.pk]
    assert [n["read"] for n in frame["notifications"]] == [False, True]
    assert set(frame["notifications"][0]) == {*NOTIFICATION_FIELDS, *GROUP_FIELDS}
    await communicator.send_json_to({"type": "sync", "since": None})
    frame = await receive_type(communicator, "missed")
    assert [n["title"] for n in frame["notifications"]] == ["seen", "missed 1", "missed 2"]
    await communicator.disconnect()


async def test_groups_are_derived_on_the_server_from_the_user():
    staff = await sync_to_async(StaffFactory)()
    plain = await sync_to_async(UserFactory)()
    staff_socket, _ = await connect(staff)
    plain_socket, _ = await connect(plain)
    layer = get_channel_layer()
    payload = events.serialize_notification(
        await sync_to_async(Notification)(pk=1, title="x", created_at=_now())
    )
    await layer.group_send(
        events.GROUP_STAFF, events.layer_created_event(payload, events.GROUP_STAFF)
    )
    assert (await receive_type(staff_socket, "notification"))["notification"]["id"] == 1
    await assert_nothing_before_barrier(plain_socket, plain)
    await staff_socket.disconnect()
    await plain_socket.disconnect()


async def test_joining_a_group_while_connected_moves_the_socket_into_it():
    user = await sync_to_async(UserFactory)()
    group = await sync_to_async(GroupFactory)()
    communicator, _ = await connect(user)
    await sync_to_async(user.groups.add)(group)
    # The m2m receiver tells the socket on commit, through the layer; it then rejoins.
    layer = get_channel_layer()
    group_name = events.auth_group_group(group.pk)
    for _ in range(100):
        async with layer.connection(layer.consistent_hash(group_name)) as connection:
            if await connection.zcard(layer._group_key(group_name)):
                break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the socket never joined the group")
    payload = events.serialize_notification(
        await sync_to_async(Notification)(pk=7, title="team", created_at=_now())
    )
    await layer.group_send(group_name, events.layer_created_event(payload, group_name))
    frame = await receive_type(communicator, "notification")
    assert frame["notification"]["id"] == 7
    await communicator.disconnect()


async def test_deactivated_user_socket_is_closed():
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    user.is_active = False
    await sync_to_async(user.save)()
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": 4401}


def _now():
    from django.utils import timezone

    return timezone.now()


async def test_pong_carries_the_last_id_so_a_client_can_notice_a_gap():
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    await communicator.send_json_to({"type": "ping"})
    assert await receive_type(communicator, "pong") == {
        "type": "pong",
        "last_id": None,
        "unread": 0,
    }
    newest = await delivered_notification(user)  # pushed nowhere: a "lost" push
    await communicator.send_json_to({"type": "ping"})
    assert await receive_type(communicator, "pong") == {
        "type": "pong",
        "last_id": newest.pk,
        "unread": 1,
    }
    await communicator.disconnect()


async def test_a_socket_rejoins_its_groups_after_redis_forgot_them(monkeypatch):
    from notifications import fanout

    monkeypatch.setattr(fanout, "REFRESH_SECONDS", 0.0)
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    layer = get_channel_layer()
    group = events.user_group(user.pk)
    # What a Redis restart (or channels-redis's group expiry) does to the membership:
    async with layer.connection(layer.consistent_hash(group)) as connection:
        await connection.delete(layer._group_key(group))
    await communicator.send_json_to({"type": "ping"})
    await receive_type(communicator, "pong")
    for _ in range(100):  # the ping started a refresh in the background
        async with layer.connection(layer.consistent_hash(group)) as connection:
            if await connection.zcard(layer._group_key(group)):
                break
        await asyncio.sleep(0.05)
    payload = events.serialize_notification(
        await sync_to_async(Notification)(pk=3, title="back", created_at=_now())
    )
    await layer.group_send(group, events.layer_created_event(payload, group))
    assert (await receive_type(communicator, "notification"))["notification"]["id"] == 3
    await communicator.disconnect()


async def test_logout_closes_that_sessions_sockets_and_no_frame_follows():
    from django.test import Client

    user = await sync_to_async(UserFactory)()
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    from notifyproject.asgi import application

    def socket_for(cookie_header):
        from channels.testing import WebsocketCommunicator

        return WebsocketCommunicator(
            application,
            "/ws/notifications/",
            headers=[
                (b"host", b"localhost"),
                (b"origin", b"http://localhost"),
                (b"cookie", cookie_header),
            ],
        )

    tab = socket_for(cookie)
    assert (await tab.connect())[0]
    await receive_type(tab, "hello")
    other_device, _ = await connect(user)  # the same user, another session
    response = await sync_to_async(browser.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await tab.receive_output(timeout=3) == {"type": "websocket.close", "code": 4401}
    # A push to the user after logout reaches the other session only.
    payload = events.serialize_notification(
        await sync_to_async(Notification)(pk=5, title="after", created_at=_now())
    )
    await get_channel_layer().group_send(
        events.user_group(user.pk),
        events.layer_created_event(payload, events.user_group(user.pk)),
    )
    assert (await receive_type(other_device, "notification"))["notification"]["id"] == 5
    # The logged-out tab is in no group, so no barrier reaches it: one reaching the other
    # device proves the push before it was handed to every socket it was ever going to reach.
    barrier = await push_barrier(user)
    assert await receive_type(other_device, "notification") == barrier
    assert await tab.receive_nothing(timeout=0.05)
    await other_device.disconnect()


async def test_sync_follows_dispatch_order_so_a_late_scheduled_one_is_not_skipped():
    from datetime import timedelta

    user = await sync_to_async(UserFactory)()

    @sync_to_async
    def scheduled_then_dispatched_late(first_seen):
        # Created before the notification the client saw last, dispatched after it.
        early = Notification.objects.create(
            title="scheduled",
            recipient=user,
            audience="user",
            publish_at=_now() + timedelta(hours=1),
        )
        seen = Notification.objects.create(title="seen", recipient=user, audience="user")
        deliveries_record(seen.pk, [user.pk])
        deliveries_record(early.pk, [user.pk])  # its publish_at came: dispatched now
        return early, seen

    early, seen = await scheduled_then_dispatched_late(None)
    assert early.pk < seen.pk
    communicator, hello = await connect(user)
    assert hello["last_id"] == early.pk  # the last one *delivered*
    await communicator.send_json_to({"type": "sync", "since": seen.pk})
    missed = await receive_type(communicator, "missed")
    assert [n["id"] for n in missed["notifications"]] == [early.pk]
    await communicator.disconnect()


async def test_an_answer_to_a_socket_the_browser_just_closed_is_no_error(monkeypatch, caplog):
    from autobahn.exception import Disconnected

    from notifications.consumers import NotificationConsumer

    real_on_ping = NotificationConsumer.on_ping
    calls = []

    async def on_ping_after_the_browser_left(self, frame):
        calls.append(frame)
        if len(calls) == 1:  # the first pong goes to a protocol daphne has closed
            raise Disconnected("Attempt to send on a closed protocol")
        await real_on_ping(self, frame)

    monkeypatch.setattr(NotificationConsumer, "on_ping", on_ping_after_the_browser_left)
    user = await sync_to_async(UserFactory)()
    communicator, _ = await connect(user)
    caplog.set_level("INFO", logger="notifications.consumers")
    await communicator.send_json_to({"type": "ping"})
    await communicator.send_json_to({"type": "ping"})
    # No "server_error" for the first (nobody is there to read it, and nothing failed):
    # the very next frame is the second ping's pong.
    assert (await communicator.receive_json_from(timeout=5))["type"] == "pong"
    assert len(calls) == 2
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    await communicator.disconnect()


async def test_frames_take_no_hop_through_channels_connection_cleanup(monkeypatch):
    """Channels' dispatch runs ``close_old_connections`` on asgiref's one thread-sensitive
    thread before every message: every frame of every socket of a process queued for that
    one thread. This consumer's database calls clean up in their own threads (db_async), so
    its handshake, frames and close must not take that hop."""
    import channels.consumer
    import channels.generic.websocket

    hops = []

    async def counted() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    monkeypatch.setattr(channels.generic.websocket, "aclose_old_connections", counted)
    user = await sync_to_async(UserFactory)()
    mine = await delivered_notification(user)
    communicator, _ = await connect(user)
    for _ in range(5):
        await communicator.send_json_to({"type": "ack", "ids": [mine.pk]})
        await communicator.send_json_to({"type": "seen", "ids": [mine.pk]})
    await assert_still_open(communicator)
    await communicator.send_json_to({"type": "sync", "since": None})
    assert (await receive_type(communicator, "missed"))["notifications"][0]["id"] == mine.pk
    await communicator.disconnect()
    assert hops == []
