"""LocalHub: one layer channel per process, each frame encoded once, delivered locally."""

import asyncio

import pytest
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
    # The discard is queued and written with the next flush, not awaited by the leaver.
    await wait_for_async(lambda: group_size(layer, group), 0)
    await hub.leave("notifications.test-fanout-keep", keep)


async def group_size(layer, group):
    async with layer.connection(layer.consistent_hash(group)) as connection:
        return await connection.zcard(layer._group_key(group))


async def wait_for_async(read, expected, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await read()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{value} != {expected}"
        await asyncio.sleep(0.01)


async def test_concurrent_joins_are_in_redis_when_join_returns_and_share_flushes(monkeypatch):
    from notifications import fanout

    layer = get_channel_layer()
    hub = LocalHub(layer, encode_frame)
    flushes = []
    real_write = fanout.write_memberships

    async def counting_write(layer, channel, adds, discards):
        flushes.append((len(adds), len(discards)))
        await real_write(layer, channel, adds, discards)

    monkeypatch.setattr(fanout, "write_memberships", counting_write)
    sockets = [FakeSocket() for _ in range(60)]
    groups = [f"notifications.test-fanout-many-{i}" for i in range(60)]

    async def join_and_check(group, socket):
        await hub.join_many([group, "notifications.test-fanout-shared"], socket)
        assert await group_size(layer, group) == 1  # written before join returned

    await asyncio.gather(*(join_and_check(g, s) for g, s in zip(groups, sockets, strict=True)))
    assert sum(adds for adds, _ in flushes) == 61  # each group written once
    assert len(flushes) <= 3  # batched, not one write per socket
    for group, socket in zip(groups, sockets, strict=True):
        await hub.leave(group, socket)
        await hub.leave("notifications.test-fanout-shared", socket)
    for group in groups:
        await wait_for_async(lambda group=group: group_size(layer, group), 0)


async def test_leaving_and_rejoining_before_the_flush_keeps_the_membership():
    layer = get_channel_layer()
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-fanout-rejoin"
    keep, first, second = FakeSocket(), FakeSocket(), FakeSocket()
    await hub.join("notifications.test-fanout-keep2", keep)
    await hub.join(group, first)
    await hub.leave(group, first)  # queues a discard
    await hub.join(group, second)  # cancels it
    await asyncio.sleep(0.05)
    assert await group_size(layer, group) == 1
    await layer.group_send(group, events.layer_read_event([5], 0, group))
    await wait_for(lambda: second.frames)
    assert not first.frames
    await hub.leave(group, second)
    await hub.leave("notifications.test-fanout-keep2", keep)


@pytest.fixture
def quick_retries(monkeypatch):
    """Deadlines and back-off of a few tenths of a second, so a test sees several rounds."""
    from notifications import fanout

    monkeypatch.setattr(fanout, "HUB_WRITE_SECONDS", 0.2)
    monkeypatch.setattr(fanout, "HANDSHAKE_JOIN_SECONDS", 0.4)
    monkeypatch.setattr(fanout, "RETRY_MIN_SECONDS", 0.05)
    monkeypatch.setattr(fanout, "RETRY_MAX_SECONDS", 0.2)


class Outage:
    """Replaces write_memberships: fails (or hangs, a silent Redis) until ``end()``."""

    def __init__(self, monkeypatch, hang: bool) -> None:
        from notifications import fanout

        self.real = fanout.write_memberships
        self.hang = hang
        self.down = True
        self.attempts = 0
        monkeypatch.setattr(fanout, "write_memberships", self.write)

    async def write(self, *args):
        self.attempts += 1
        if self.down:
            if self.hang:
                await asyncio.Event().wait()  # never answers: only the deadline ends it
            raise ConnectionError("redis is down")
        await self.real(*args)

    def end(self) -> None:
        self.down = False


@pytest.mark.usefixtures("quick_retries")
@pytest.mark.parametrize("hang", [False, True], ids=["refused", "silent"])
async def test_a_failed_membership_write_is_retried_until_redis_answers(monkeypatch, hang):
    layer = get_channel_layer()
    hub = LocalHub(layer, encode_frame)
    outage = Outage(monkeypatch, hang)
    socket = FakeSocket()
    group = f"notifications.test-fanout-broken-{hang}"
    started = asyncio.get_running_loop().time()
    assert await hub.join(group, socket) is False  # not written, and said so
    assert asyncio.get_running_loop().time() - started < 1.0  # the deadline, not a hang
    assert socket in hub.members[group]  # still served locally: pushes resume later
    # Redis still failing: a new group's join learns it at once instead of waiting again.
    other = f"{group}-other"
    started = asyncio.get_running_loop().time()
    assert await hub.join(other, socket) is False
    assert asyncio.get_running_loop().time() - started < 0.1
    await wait_for(lambda: outage.attempts >= 3)  # retried with back-off, not given up
    assert await group_size(layer, group) == 0
    outage.end()
    await wait_for_async(lambda: group_size(layer, group), 1)  # no new join needed
    await wait_for_async(lambda: group_size(layer, other), 1)
    assert not hub.failing
    await layer.group_send(group, events.layer_read_event([9], 0, group))
    await wait_for(lambda: socket.frames)
    assert socket.frames == ['{"type":"read","ids":[9],"unread":0}']
    await hub.leave(group, socket)
    await hub.leave(other, socket)
    assert hub.channel is None


@pytest.mark.usefixtures("quick_retries")
async def test_a_socket_that_leaves_during_an_outage_leaves_nothing_behind(monkeypatch):
    layer = get_channel_layer()
    hub = LocalHub(layer, encode_frame)
    outage = Outage(monkeypatch, hang=True)
    socket = FakeSocket()
    group = "notifications.test-fanout-gone"
    assert await hub.join(group, socket) is False
    await hub.leave(group, socket)
    assert hub.members == {}
    assert not hub.failing  # nothing left to retry for a group nobody here needs
    assert hub.channel is None
    outage.end()
    await asyncio.sleep(0.3)
    assert await group_size(layer, group) == 0


@pytest.mark.usefixtures("quick_retries")
async def test_a_refresh_that_fails_is_retried_without_waiting_for_the_next(monkeypatch):
    layer = get_channel_layer()
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-fanout-refresh-retry"
    socket = FakeSocket()
    assert await hub.join(group, socket) is True
    async with layer.connection(layer.consistent_hash(group)) as connection:
        await connection.delete(layer._group_key(group))  # a restarted Redis forgot it
    real_add = layer.group_add

    async def silent_add(*args):
        await asyncio.Event().wait()

    monkeypatch.setattr(layer, "group_add", silent_add)
    started = asyncio.get_running_loop().time()
    await hub.refresh(force=True, wait=True)
    assert asyncio.get_running_loop().time() - started < 1.0  # the batch's deadline
    assert hub.failing
    monkeypatch.setattr(layer, "group_add", real_add)
    await wait_for_async(lambda: group_size(layer, group), 1)  # the retry, not the refresh
    await hub.leave(group, socket)


@pytest.mark.usefixtures("quick_retries")
async def test_a_receive_that_never_answers_is_restarted(monkeypatch):
    """A half-open connection: the hub's receive gets no answer and no error, ever."""
    from notifications import fanout

    monkeypatch.setattr(fanout, "HUB_RECEIVE_SECONDS", 0.3)
    layer = get_channel_layer()
    real_receive = layer.receive
    calls = []

    async def first_receive_hangs(channel):
        calls.append(channel)
        if len(calls) == 1:
            await asyncio.Event().wait()
        return await real_receive(channel)

    monkeypatch.setattr(layer, "receive", first_receive_hangs)
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-fanout-half-open"
    socket = FakeSocket()
    assert await hub.join(group, socket) is True
    await wait_for(lambda: len(calls) >= 2)  # the first receive was given up
    await layer.group_send(group, events.layer_read_event([3], 0, group))
    await wait_for(lambda: socket.frames)
    await hub.leave(group, socket)


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


async def test_memberships_land_on_their_shard_of_a_sharded_layer():
    """With the layer sharded over two Redis databases, each group is written where
    channels-redis will look for it, and a group_send reaches the local member."""
    import os
    import uuid

    from channels_redis.core import RedisChannelLayer

    base = os.environ["REDIS_URL"].rsplit("/", 1)[0]
    layer = RedisChannelLayer(
        hosts=[
            {"address": f"{base}/13", "socket_timeout": None},
            {"address": f"{base}/14", "socket_timeout": None},
        ],
        prefix=f"test-shards-{uuid.uuid4().hex[:8]}",
    )
    hub = LocalHub(layer, encode_frame)
    sockets = {f"notifications.test-shard-{i}": FakeSocket() for i in range(12)}
    try:
        for group, socket in sockets.items():
            await hub.join(group, socket)
        shards = {layer.consistent_hash(group) for group in sockets}
        assert shards == {0, 1}  # both shards are used
        for group in sockets:
            async with layer.connection(layer.consistent_hash(group)) as connection:
                assert await connection.zcard(layer._group_key(group)) == 1
        for index, group in enumerate(sockets):
            await layer.group_send(group, events.layer_read_event([index], 0, group))
        for index, socket in enumerate(sockets.values()):
            await wait_for(lambda socket=socket: socket.frames)
            assert socket.frames == [f'{{"type":"read","ids":[{index}],"unread":0}}']
    finally:
        for group, socket in sockets.items():
            await hub.leave(group, socket)
        for group in sockets:
            await wait_for_async(lambda group=group: group_size(layer, group), 0)
        await layer.flush()
