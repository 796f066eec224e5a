"""The listener's self-probe: a subscription that answers PING but receives nothing is left.

A subscription on a demoted (or cut-off) master keeps answering PING while what publishers
send goes to the new master. Here that is made real with two Redis servers: the shared test
Redis holds the subscription, and the probes (like the publishers after a failover) go to a
private redis-server. Pub/sub ignores database numbers, so another server it must be.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.test import override_settings

from notifications.events import (
    EventError,
    build_probe_message,
    parse_pubsub_event,
    parse_pubsub_message,
)
from notifications.listener import NotificationListener
from tests import processes

# Short, so each test sees several probes; the timeout leaves room for a loaded machine.
PROBE_SETTINGS = {"HEALTH_CHECK_INTERVAL": 0.3, "HEALTH_CHECK_TIMEOUT": 1.5}


# ---- the message -------------------------------------------------------------------------


def test_the_probe_message_round_trips_and_is_no_notification() -> None:
    payload = build_probe_message("ab12")
    assert payload == '{"v":1,"event":"probe","id":null,"nonce":"ab12"}'
    event = parse_pubsub_event(payload.encode())
    assert (event.event, event.id, event.nonce) == ("probe", None, "ab12")
    assert parse_pubsub_event('{"v":1,"event":"created","id":7}').id == 7
    with pytest.raises(EventError):
        parse_pubsub_message(payload)  # announces no notification


@pytest.mark.parametrize(
    "payload",
    [
        '{"v":2,"event":"probe","id":null,"nonce":"a"}',
        '{"v":1,"event":"probe","id":null}',
        '{"v":1,"event":"probe","id":null,"nonce":""}',
        '{"v":1,"event":"probe","id":null,"nonce":7}',
    ],
)
def test_a_bad_probe_is_an_event_error(payload: str) -> None:
    with pytest.raises(EventError):
        parse_pubsub_event(payload)


async def test_probes_never_reach_the_dispatch_path() -> None:
    """Another listener's probe, and our own, dispatch nothing (no database query either)."""
    listener = NotificationListener(handle_signals=False)
    listener._probe_nonce = "mine"
    messages = [
        {"type": "message", "data": build_probe_message("someone-elses")},
        {"type": "message", "data": build_probe_message("mine")},
    ]
    assert await listener.handle_messages(messages) == 0
    assert listener._probe_nonce is None  # ours came back


# ---- the listener, on real Redis servers ---------------------------------------------------


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[str]:
    """A private redis-server: where the probes go when the subscription cannot hear them."""
    port = processes.free_port()
    server = processes.start_redis(port, "--loglevel", "warning")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.stop()


class CountingListener(NotificationListener):
    """Counts sessions, probes and why each session ended."""

    def __init__(self, probe_url: str | None = None) -> None:
        super().__init__(handle_signals=False)
        self.probe_url = probe_url
        self.sessions = 0
        self.probes = 0
        self.endings: list[str] = []

    def _commands_client(self) -> aioredis.Redis:
        if self.probe_url is None:
            return super()._commands_client()
        return aioredis.Redis.from_url(self.probe_url, socket_timeout=5, socket_connect_timeout=5)

    async def _session(self) -> None:
        self.sessions += 1
        try:
            await super()._session()
        except redis.RedisError as exc:
            self.endings.append(str(exc))
            raise

    async def _send_probe(self, pubsub, commands) -> None:  # type: ignore[no-untyped-def]
        self.probes += 1
        await super()._send_probe(pubsub, commands)


@pytest.fixture
def probe_settings() -> Iterator[None]:
    channel = f"{settings.NOTIFICATIONS['CHANNEL']}:probe-{uuid.uuid4().hex[:8]}"
    with override_settings(
        NOTIFICATIONS={**settings.NOTIFICATIONS, **PROBE_SETTINGS, "CHANNEL": channel}
    ):
        yield


async def run_until(listener: CountingListener, done: Callable[[], object], timeout: float) -> None:
    """Run the listener until ``done()`` or the timeout, then stop it and wait for it."""
    task = asyncio.create_task(listener.run())
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
    finally:
        listener.stop()
        await asyncio.wait_for(task, timeout=15)


@pytest.mark.django_db(transaction=True)
async def test_a_subscription_that_answers_ping_but_hears_no_probe_is_resubscribed(
    probe_settings: None, elsewhere: str
) -> None:
    listener = CountingListener(probe_url=elsewhere)
    await run_until(listener, lambda: listener.sessions >= 2 and listener.endings, 20)
    assert listener.sessions >= 2, listener.endings
    # It was the probe, not PING: the subscription answered every PING.
    assert "answers PING but its probe did not come back" in listener.endings[0]


@pytest.mark.django_db(transaction=True)
async def test_a_healthy_subscription_hears_its_probes_and_stays(probe_settings: None) -> None:
    listener = CountingListener()
    await run_until(listener, lambda: listener.probes >= 4, 20)
    assert listener.probes >= 4
    assert listener.sessions == 1, listener.endings
    assert listener.endings == []
