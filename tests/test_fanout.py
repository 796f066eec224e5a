"""LocalHub: one layer channel per process, each frame encoded once, delivered locally."""

import asyncio

from channels.layers import get_channel_layer

from notifications import events
from notifications.fanout import LocalHub, encode_frame


class FakeSocket:
    """Stands in for a consumer: records what the hub hands it."""

    def __init__(self):
        self.frames = []
        self.events = []

    async def deliver(self, event, frame):
        self.events.append(event)
        self.frames.append(frame)


def counting_encoder():
    calls = []

    def encode(event):
        calls.append(event)
        return encode_frame(event)

    return encode, calls


async def wait_for(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def payload(pk):
    return {
        "id": pk,
        "title": "t",
        "body": "",
        "level": "info",
        "url": "",
        "created_at": "2026-01-01T00:00:00+00:00",
        "read": False,
    }


async def test_one_layer_message_reaches_every_local_member_with_one_encode():
    layer = get_channel_layer()
    encode, calls = counting_encoder()
    hub = LocalHub(layer, encode)
    group = "notifications.test-fanout-a"
    sockets = [FakeSocket() for _ in range(450)]
    outsider = FakeSocket()
    for socket in sockets:
        await hub.join(group, socket)
    await hub.join("notifications.test-fanout-b", outsider)
    await layer.group_send(group, events.layer_created_event(payload(1), group))
    await wait_for(lambda: all(socket.frames for socket in sockets))
    assert len(calls) == 1
    expected = encode_frame(events.layer_created_event(payload(1), group))
    assert expected.startswith('{"type":"notification","notification":{"id":1,')
    assert {socket.frames[0] for socket in sockets} == {expected}
    assert outsider.frames == []
    # The group holds the process's one channel, not 450.
    async with layer.connection(layer.consistent_hash(group)) as connection:
        assert await connection.zcard(layer._group_key(group)) == 1
    for socket in sockets:
        await hub.leave(group, socket)
    await hub.leave("notifications.test-fanout-b", outsider)
    assert hub.channel is None  # nothing left to serve: the receive loop stopped


async def test_last_member_leaving_discards_the_group():
    layer = get_channel_layer()
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-fanout-c"
    keep, socket = FakeSocket(), FakeSocket()
    await hub.join("notifications.test-fanout-keep", keep)
    await hub.join(group, socket)
    await hub.leave(group, socket)
    async with layer.connection(layer.consistent_hash(group)) as connection:
        assert await connection.zcard(layer._group_key(group)) == 0
    await hub.leave("notifications.test-fanout-keep", keep)


async def test_refresh_restores_memberships_redis_forgot():
    layer = get_channel_layer()
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-fanout-d"
    socket = FakeSocket()
    await hub.join(group, socket)
    async with layer.connection(layer.consistent_hash(group)) as connection:
        await connection.delete(layer._group_key(group))
    await hub.refresh(force=True, wait=True)
    await layer.group_send(group, events.layer_read_event([4], 0, group))
    await wait_for(lambda: socket.frames)
    assert socket.frames == ['{"type":"read","ids":[4],"unread":0}']
    await hub.leave(group, socket)


async def test_control_events_reach_members_without_a_frame():
    layer = get_channel_layer()
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-fanout-e"
    socket = FakeSocket()
    await hub.join(group, socket)
    await layer.group_send(group, events.layer_logout_event(group))
    await wait_for(lambda: socket.events)
    assert socket.events[0]["type"] == "notify.logout"
    assert socket.frames == [None]
    await hub.leave(group, socket)
