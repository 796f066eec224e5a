"""The stack as separate processes: real daphne, real listener, real sockets over TCP."""

import asyncio
import json
import signal
import time

import pytest
import websockets
import websockets.exceptions
from asgiref.sync import sync_to_async

from notifications.services import notify
from tests import processes
from tests.conftest import session_cookie
from tests.factories import UserFactory

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def open_ws(stack, user, origin=None):
    cookie = await sync_to_async(session_cookie)(user)
    return await websockets.connect(
        f"ws://127.0.0.1:{stack['port']}/ws/notifications/",
        origin=origin or f"http://127.0.0.1:{stack['port']}",
        additional_headers={"Cookie": cookie},
        open_timeout=5,
    )


async def recv_type(ws, frame_type, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if frame["type"] == frame_type:
            return frame


async def test_notification_travels_from_save_to_a_real_socket(live_stack):
    user = await sync_to_async(UserFactory)()
    async with await open_ws(live_stack, user) as ws:
        hello = await recv_type(ws, "hello")
        assert hello["unread"] == 0
        started = time.perf_counter()
        notification = await sync_to_async(notify)(user, "Over TCP")
        frame = await recv_type(ws, "notification")
        latency_ms = (time.perf_counter() - started) * 1000
        assert frame["notification"]["id"] == notification.pk
        print(f"save-to-socket latency over real daphne: {latency_ms:.1f} ms")


async def test_foreign_origin_is_refused_by_daphne(live_stack):
    user = await sync_to_async(UserFactory)()
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        await open_ws(live_stack, user, origin="http://evil.example")
    assert refused.value.response.status_code == 403


async def test_anonymous_socket_is_closed_with_4401_by_daphne(live_stack):
    async with websockets.connect(
        f"ws://127.0.0.1:{live_stack['port']}/ws/notifications/",
        origin=f"http://127.0.0.1:{live_stack['port']}",
    ) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4401


@pytest.mark.slow
async def test_an_idle_socket_survives_a_minute_and_still_receives(live_stack):
    """redis-py 8's 5 s socket timeout once killed idle consumers with 1011 (redis-py#4091)."""
    user = await sync_to_async(UserFactory)()
    async with await open_ws(live_stack, user) as ws:
        await recv_type(ws, "hello")
        await asyncio.sleep(65)
        notification = await sync_to_async(notify)(user, "After a quiet minute")
        frame = await recv_type(ws, "notification")
        assert frame["notification"]["id"] == notification.pk
    assert ws.close_code == 1000


def test_listener_stops_cleanly_on_sigterm(live_env, transactional_db):
    proc = processes.start_listener(live_env)
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.popen.wait(10) == 0, proc.output
    assert time.monotonic() - started < 5
    assert "Received SIGTERM" in proc.output
    proc.stop()
