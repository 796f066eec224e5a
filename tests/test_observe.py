"""notifications.observe: watch events reach subscribers, cost nothing unwatched, never raise."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from notifications import observe
from tests import processes


@pytest.fixture(autouse=True)
def _fresh_observe() -> Iterator[None]:
    observe.reset()
    yield
    observe.reset()


@pytest.fixture
def watcher(redis_client: redis.Redis) -> Iterator[redis.client.PubSub]:
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(observe.watch_channel())
    assert pubsub.get_message(timeout=1) is None  # consumes the subscribe confirmation
    yield pubsub
    pubsub.close()


def next_event(pubsub: redis.client.PubSub, timeout: float = 2.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            return json.loads(message["data"])
    return None


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a stopped Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def redis_at(port: int):
    return override_settings(
        NOTIFICATIONS={**settings.NOTIFICATIONS, "REDIS_URL": f"redis://127.0.0.1:{port}/15"}
    )


def test_watch_channel_follows_the_app_channel():
    assert observe.watch_channel() == settings.NOTIFICATIONS["CHANNEL"] + ":watch"


def test_a_subscriber_receives_the_event_with_its_fields(watcher):
    until = datetime(2030, 1, 31, 9, 0, tzinfo=UTC)
    observe.emit("snoozed", user="7", ids=[3, 4], until=until)

    event = next_event(watcher)
    assert event is not None
    assert event["v"] == 1 and event["event"] == "snoozed"
    assert event["user"] == "7" and event["ids"] == [3, 4]
    assert event["until"] == "2030-01-31T09:00:00+00:00"
    assert datetime.fromisoformat(event["at"]).tzinfo is not None


async def test_aemit_reaches_a_subscriber(watcher):
    await observe.aemit("dispatched", id=42, audience="user", recipients=1)

    event = next_event(watcher)
    assert event is not None
    assert (event["event"], event["id"], event["audience"], event["recipients"]) == (
        "dispatched",
        42,
        "user",
        1,
    )


def test_nobody_watching_skips_publishing_for_a_while(redis_client, monkeypatch):
    observe.emit("read", user="1", ids=[1])  # nobody subscribed: answer 0
    assert observe._skipping()

    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(observe.watch_channel())
    pubsub.get_message(timeout=1)
    try:
        # Inside the window nothing is sent, not even to a watcher that just arrived...
        calls = []
        monkeypatch.setattr(observe, "_get_client", lambda: calls.append(1))
        observe.emit("read", user="1", ids=[2])
        assert calls == []
        monkeypatch.undo()
        assert next_event(pubsub, timeout=0.3) is None
        # ...and once it has passed, the watcher gets the next event.
        observe._skip_until = 0.0
        observe.emit("read", user="1", ids=[3])
        event = next_event(pubsub)
        assert event is not None and event["ids"] == [3]
        assert not observe._skipping()
    finally:
        pubsub.close()


def test_the_skip_window_lasts_about_two_seconds(redis_client):
    before = time.monotonic()
    observe.emit("expired", id=1)
    assert before + 1.5 < observe._skip_until <= time.monotonic() + observe.SKIP_SECONDS


def test_redis_refusing_connections_raises_nothing():
    with redis_at(processes.free_port()):
        started = time.monotonic()
        observe.emit("delivered", user="1", ids=[1])
        assert time.monotonic() - started < 1.0
        assert observe._skipping()


def test_a_silent_redis_holds_emit_for_the_deadline_only(silent_server):
    with redis_at(silent_server):
        started = time.monotonic()
        observe.emit("delivered", user="1", ids=[1])
        first = time.monotonic() - started
        started = time.monotonic()
        observe.emit("delivered", user="1", ids=[2])
        second = time.monotonic() - started
    assert first < observe.DEADLINE_SECONDS + 0.5
    assert second < 0.01  # skipped: no second wait


async def test_a_silent_redis_holds_aemit_for_the_deadline_only(silent_server):
    with redis_at(silent_server):
        started = time.monotonic()
        await observe.aemit("read", user="1", ids=[1])
        first = time.monotonic() - started
        started = time.monotonic()
        await observe.aemit("read", user="1", ids=[2])
        second = time.monotonic() - started
    assert first < observe.DEADLINE_SECONDS + 0.5
    assert second < 0.01


def test_unserializable_fields_do_not_raise(watcher):
    observe.emit("archived", user=object(), ids={5})
    event = next_event(watcher)
    assert event is not None and event["ids"] == [5]
