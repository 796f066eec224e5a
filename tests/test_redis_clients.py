"""redis_clients: every client the app makes comes from REDIS_URL or from Sentinel, alike."""

from __future__ import annotations

import os

import pytest
import redis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from django.conf import settings
from django.test import override_settings

from notifications import conf, health, publisher, redis_clients

SENTINELS = {
    **settings.NOTIFICATIONS,
    "REDIS_URL": "redis://:url-secret@unused.example.com:6379/0",
    "REDIS_SENTINELS": ["s1.example.com:26379", ("s2.example.com", 26380)],
    "REDIS_SENTINEL_MASTER": "notify",
    "REDIS_OPTIONS": {"password": "master-secret", "db": 3},
    "REDIS_SENTINEL_OPTIONS": {"password": "sentinel-secret"},
}


def test_without_sentinel_the_url_and_options_make_the_client() -> None:
    overrides = {
        **settings.NOTIFICATIONS,
        "REDIS_URL": "redis://:pw@127.0.0.1:6390/4",
        "REDIS_OPTIONS": {"client_name": "notify"},
    }
    with override_settings(NOTIFICATIONS=overrides):
        assert not redis_clients.uses_sentinel()
        client = redis_clients.sync_client(socket_timeout=1.5)
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 4)
        assert kwargs["password"] == "pw"
        assert kwargs["socket_timeout"] == 1.5
        assert kwargs["client_name"] == "notify"
        redis_clients.close(client)
        assert redis_clients.describe() == "redis://:***@127.0.0.1:6390/4"


def test_with_sentinel_every_client_asks_the_sentinels_for_the_master() -> None:
    with override_settings(NOTIFICATIONS=SENTINELS):
        assert redis_clients.uses_sentinel()
        sync = redis_clients.sync_client(socket_timeout=1, socket_connect_timeout=1)
        pool = sync.connection_pool
        assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
        assert pool.service_name == "notify"
        # The master gets REDIS_OPTIONS and the caller's timeouts, never the URL's password.
        assert pool.connection_kwargs["password"] == "master-secret"
        assert pool.connection_kwargs["db"] == 3
        assert pool.connection_kwargs["socket_timeout"] == 1
        sentinels = pool.sentinel_manager.sentinels
        assert [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in sentinels
        ] == [("s1.example.com", 26379), ("s2.example.com", 26380)]
        sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs
        assert sentinel_kwargs["password"] == "sentinel-secret"
        # A silent sentinel cannot hang a connect: its queries have the connect deadline.
        assert sentinel_kwargs["socket_timeout"] == 1
        redis_clients.close(sync)


async def test_the_asyncio_client_follows_sentinel_too_and_closes_the_sentinels() -> None:
    with override_settings(NOTIFICATIONS=SENTINELS):
        client = redis_clients.async_client(socket_timeout=None, socket_connect_timeout=5)
    pool = client.connection_pool
    assert isinstance(pool, aiosentinel.SentinelConnectionPool)
    assert pool.connection_kwargs["socket_timeout"] is None  # the subscription blocks
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs[
        "socket_timeout"
    ] == (5)
    await redis_clients.aclose(client)


def test_the_description_for_logs_names_no_password() -> None:
    with override_settings(NOTIFICATIONS=SENTINELS):
        text = redis_clients.describe()
    assert text == (
        "Sentinel master 'notify' (sentinels s1.example.com:26379, s2.example.com:26380)"
    )
    assert "secret" not in text
    assert redis_clients.redacted_url("rediss://u:p%40w@h:1/0") == "rediss://u:***@h:1/0"
    assert redis_clients.redacted_url("redis://h:1/0") == "redis://h:1/0"


def test_the_publisher_and_health_use_sentinel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both go through redis_clients: with no sentinel answering, nothing hangs or raises."""
    unreachable = {
        **SENTINELS,
        "REDIS_SENTINELS": ["127.0.0.1:1"],
        "REDIS_OPTIONS": {},
        "PUBLISH_TIMEOUT": 0.5,
    }
    with override_settings(NOTIFICATIONS=unreachable):
        publisher.reset()
        assert isinstance(
            publisher._get_client().connection_pool, redis.sentinel.SentinelConnectionPool
        )
        assert publisher._publish_now_unsafe(1) is False  # logged; the sweep delivers
        report = health.HealthReport()
        client = redis_clients.sync_client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            assert health.check_redis(report, client) is False
        finally:
            redis_clients.close(client)
        assert report.redis.startswith("error")
    publisher.reset()


def test_a_real_redis_through_the_url_answers() -> None:
    with override_settings(
        NOTIFICATIONS={**settings.NOTIFICATIONS, "REDIS_URL": os.environ["REDIS_URL"]}
    ):
        client = redis_clients.sync_client(socket_timeout=2)
        try:
            assert client.ping() is True
        finally:
            redis_clients.close(client)
    assert conf.get().REDIS_SENTINELS == []
