"""Batched receive of the hub's channel, through the real channels-redis layer and Redis."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from notifications import events, layer_receive
from notifications.fanout import LocalHub, encode_frame
from tests.test_fanout import FakeSocket, payload, wait_for


async def queue_size(layer, channel):
    index, queue, backup = layer_receive._keys(layer, channel)
    async with layer.connection(index) as connection:
        return await connection.zcard(queue), await connection.zcard(backup)


@pytest.fixture
async def layer():
    layer = get_channel_layer()
    assert layer_receive.supports_drain(layer)
    yield layer
    await layer.flush()


async def test_drain_takes_the_queue_oldest_first_in_batches_and_keeps_a_backup(layer):
    channel = await layer.new_channel()
    for pk in range(1, 251):
        await layer.send(channel, {"type": "test.message", "pk": pk})
    first = await layer_receive.drain(layer, channel)
    assert [message["pk"] for message in first] == list(range(1, 101))
    # Until the next drain, the batch is kept: a lost answer can be put back.
    assert await queue_size(layer, channel) == (150, 100)
    second = await layer_receive.drain(layer, channel)
    third = await layer_receive.drain(layer, channel)
    assert [m["pk"] for m in second + third] == list(range(101, 251))
    assert await layer_receive.drain(layer, channel) == []
    assert await queue_size(layer, channel) == (0, 0)  # the last batch's backup is gone too


async def test_restore_puts_a_batch_back_in_front_of_the_queue(layer):
    channel = await layer.new_channel()
    for pk in range(1, 6):
        await layer.send(channel, {"type": "test.message", "pk": pk})
    taken = await layer_receive.drain(layer, channel, limit=3)
    assert [m["pk"] for m in taken] == [1, 2, 3]
    assert await layer_receive.restore(layer, channel) == 3
    again = await layer_receive.drain(layer, channel)
    assert [m["pk"] for m in again] == [1, 2, 3, 4, 5]


async def test_messages_for_another_channel_of_the_process_reach_its_own_receive(layer):
    ours, theirs = await layer.new_channel(), await layer.new_channel()
    await layer.send(theirs, {"type": "test.message", "pk": 1})
    await layer.send(ours, {"type": "test.message", "pk": 2})
    assert [m["pk"] for m in await layer_receive.drain(layer, ours)] == [2]
    received = await asyncio.wait_for(layer.receive(theirs), 2)
    assert received == {"type": "test.message", "pk": 1}


async def test_a_message_that_does_not_decode_is_dropped_and_the_rest_delivered(layer):
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.message", "pk": 1})
    index, queue, _ = layer_receive._keys(layer, channel)
    async with layer.connection(index) as connection:
        await connection.zadd(queue, {b"not msgpack \xc1": 1e18})  # the newest
    await layer.send(channel, {"type": "test.message", "pk": 3})
    # A member written later, with a later score, comes last.
    pks = [m["pk"] for m in await layer_receive.drain(layer, channel)]
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
    real_drain = layer_receive.drain
    failures = []

    async def drain_whose_answer_is_lost(layer_, channel, limit=layer_receive.DRAIN_LIMIT):
        taken = await real_drain(layer_, channel, limit)
        if taken and not failures:
            failures.append(len(taken))
            raise ConnectionError("the answer was lost")
        return taken

    monkeypatch.setattr(layer_receive, "drain", drain_whose_answer_is_lost)
    for pk in range(1, 51):
        await layer.group_send(group, events.layer_created_event(payload(pk), group))
    await wait_for(lambda: len({e["notification"]["id"] for e in socket.events}) == 50, timeout=10)
    assert failures  # a batch was taken and its answer lost
    ids = [event["notification"]["id"] for event in socket.events]
    assert sorted(set(ids)) == list(range(1, 51))
    assert len(ids) == 50  # put back, and handed over once
    await hub.leave(group, socket)
