"""Batched receive of the hub's channel, through the real channels-redis layer and Redis."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from notifications import events, layer_receive
from notifications.fanout import LocalHub, encode_frame
from tests.test_fanout import FakeSocket, payload, wait_for


async def queue_size(layer, channel):
    """The queue's length, and the length of every drain backup of it together."""
    index, queue = layer_receive._keys(layer, channel)
    async with layer.connection(index) as connection:
        backups = [key async for key in connection.scan_iter(match=queue + "$drained:*")]
        kept = sum([await connection.zcard(key) for key in backups])
        return await connection.zcard(queue), kept


def drain(layer, channel):
    return layer_receive.QueueDrain(layer, channel)


@pytest.fixture
async def layer():
    layer = get_channel_layer()
    assert layer_receive.supports_drain(layer)
    yield layer
    await layer.flush()


async def test_drain_takes_the_queue_oldest_first_in_batches_and_keeps_a_backup(layer):
    channel = await layer.new_channel()
    queue = drain(layer, channel)
    for pk in range(1, 251):
        await layer.send(channel, {"type": "test.message", "pk": pk})
    first = await queue.take()
    assert [message["pk"] for message in first] == list(range(1, 101))
    # Until the next drain, the batch is kept: a lost answer can be put back.
    assert await queue_size(layer, channel) == (150, 100)
    second = await queue.take()
    assert await queue_size(layer, channel) == (50, 100)  # the first batch's backup is gone
    third = await queue.take()
    assert [m["pk"] for m in second + third] == list(range(101, 251))
    assert await queue.take() == []
    assert await queue_size(layer, channel) == (0, 0)  # the last batch's backup is gone too


async def test_a_lost_answer_puts_its_batch_back_in_front_of_the_queue(layer, monkeypatch):
    channel = await layer.new_channel()
    queue = drain(layer, channel)
    for pk in range(1, 8):
        await layer.send(channel, {"type": "test.message", "pk": pk})
    assert [m["pk"] for m in await queue.take(limit=2)] == [1, 2]  # handed over
    connection = layer.connection(queue.index)
    real_eval = connection.eval

    async def eval_whose_answer_is_lost(*args):
        await real_eval(*args)
        raise ConnectionError("the answer was lost")

    monkeypatch.setattr(connection, "eval", eval_whose_answer_is_lost)
    with pytest.raises(ConnectionError):
        await queue.take(limit=3)  # took 3, 4, 5, and the answer never came
    monkeypatch.undo()
    assert await queue.put_back() == 3
    again = await queue.take()
    assert [m["pk"] for m in again] == [3, 4, 5, 6, 7]  # and 1, 2 not again


async def test_a_drain_that_never_ran_puts_back_nothing_handed_over_already(layer, monkeypatch):
    """Redis fails between two drains: the batch before was handed over; not again."""
    channel = await layer.new_channel()
    queue = drain(layer, channel)
    for pk in range(1, 6):
        await layer.send(channel, {"type": "test.message", "pk": pk})
    assert [m["pk"] for m in await queue.take(limit=3)] == [1, 2, 3]
    connection = layer.connection(queue.index)

    async def eval_of_a_dead_master(*args):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(connection, "eval", eval_of_a_dead_master)
    with pytest.raises(ConnectionError):
        await queue.take()
    with pytest.raises(ConnectionError):
        await queue.put_back()  # still down: tried again before the next take
    monkeypatch.undo()
    assert [m["pk"] for m in await queue.take()] == [4, 5]
    assert await queue_size(layer, channel) == (0, 2)


async def test_messages_for_another_channel_of_the_process_reach_its_own_receive(layer):
    ours, theirs = await layer.new_channel(), await layer.new_channel()
    await layer.send(theirs, {"type": "test.message", "pk": 1})
    await layer.send(ours, {"type": "test.message", "pk": 2})
    assert [m["pk"] for m in await drain(layer, ours).take()] == [2]
    received = await asyncio.wait_for(layer.receive(theirs), 2)
    assert received == {"type": "test.message", "pk": 1}


async def test_a_message_that_does_not_decode_is_dropped_and_the_rest_delivered(layer):
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.message", "pk": 1})
    index, queue = layer_receive._keys(layer, channel)
    async with layer.connection(index) as connection:
        await connection.zadd(queue, {b"not msgpack \xc1": 1e18})  # the newest
    await layer.send(channel, {"type": "test.message", "pk": 3})
    # A member written later, with a later score, comes last.
    pks = [m["pk"] for m in await drain(layer, channel).take()]
    assert pks == [1, 3]


async def test_a_burst_to_one_group_reaches_its_member_complete_and_in_order(layer):
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-drain-burst"
    other = "notifications.test-drain-other"
    socket, bystander = FakeSocket(), FakeSocket()
    await hub.join(group, socket)
    await hub.join(other, bystander)
    for pk in range(1, 601):
        await layer.group_send(group, events.layer_created_event(payload(pk), group))
        if pk % 100 == 0:
            await layer.group_send(other, events.layer_created_event(payload(10_000 + pk), other))
    await wait_for(lambda: len(socket.events) == 600 and len(bystander.events) == 6, timeout=10)
    assert [event["notification"]["id"] for event in socket.events] == list(range(1, 601))
    assert [event["notification"]["id"] for event in bystander.events] == [
        10_000 + pk for pk in range(100, 601, 100)
    ]
    await hub.leave(group, socket)
    await hub.leave(other, bystander)
    assert hub.channel is None


async def test_a_drain_that_fails_puts_its_batch_back_and_the_hub_goes_on(layer, monkeypatch):
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-drain-fail"
    socket = FakeSocket()
    await hub.join(group, socket)
    real_take = layer_receive.QueueDrain.take
    failures = []

    async def take_whose_answer_is_lost(self, limit=layer_receive.DRAIN_LIMIT):
        taken = await real_take(self, limit)
        if taken and not failures:
            failures.append(len(taken))
            raise ConnectionError("the answer was lost")
        return taken

    monkeypatch.setattr(layer_receive.QueueDrain, "take", take_whose_answer_is_lost)
    for pk in range(1, 51):
        await layer.group_send(group, events.layer_created_event(payload(pk), group))
    await wait_for(lambda: len({e["notification"]["id"] for e in socket.events}) == 50, timeout=10)
    assert failures  # a batch was taken and its answer lost
    ids = [event["notification"]["id"] for event in socket.events]
    assert sorted(set(ids)) == list(range(1, 51))
    assert len(ids) == 50  # put back, and handed over once
    await hub.leave(group, socket)


async def test_a_push_the_layer_hands_over_twice_reaches_a_socket_once(layer):
    """channels-redis hands a message over again when Redis fails before it cleans up its
    backup (a Sentinel failover); the hub knows the send. A deliberate re-push (a snooze
    come back) is a new send and arrives."""
    hub = LocalHub(layer, encode_frame)
    group = "notifications.test-drain-twice"
    socket = FakeSocket()
    await hub.join(group, socket)
    first = events.layer_created_event(payload(1), group)
    await layer.send(hub.channel, first)
    await layer.send(hub.channel, first)  # the same message, a second member in Redis
    await layer.send(hub.channel, events.layer_created_event(payload(2), group))
    await wait_for(lambda: len(socket.events) == 2, timeout=5)
    await layer.send(hub.channel, events.layer_created_event(payload(1), group))  # re-push
    await wait_for(lambda: len(socket.events) == 3, timeout=5)
    await asyncio.sleep(0.2)
    assert [event["notification"]["id"] for event in socket.events] == [1, 2, 1]
    await hub.leave(group, socket)
