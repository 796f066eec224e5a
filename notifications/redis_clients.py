"""Every Redis client the app makes, from ``REDIS_URL`` or through Sentinel: one place.

The save hook's PUBLISH (sync), the listener's subscription and commands (asyncio) and the
health command (sync) all come from here, so a site that moves to Sentinel changes two
settings and every client follows the master. A Sentinel client asks the sentinels for the
master's address on every new connection, so after a failover the next reconnect finds the
new master by itself; nothing here caches an address.

Callers pass their own timeouts (a save must never wait long; a subscription blocks for as
long as it likes); ``REDIS_OPTIONS`` (credentials, TLS, db) reach every client, and the
connections to the sentinels themselves get ``REDIS_SENTINEL_OPTIONS`` with a deadline of
their own, so a silent sentinel cannot hang a connect.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel

from notifications import conf
from notifications.setup import sentinel_address

# A sentinel that answers nothing must not hold up a connect for longer than a connect may
# take: its queries get the caller's connect timeout, or this when the caller sets none.
SENTINEL_TIMEOUT = 5.0


def uses_sentinel(settings: conf.NotificationSettings | None = None) -> bool:
    """Return whether the app finds its Redis through Sentinel (both keys set)."""
    settings = settings or conf.get()
    return bool(settings.REDIS_SENTINELS and settings.REDIS_SENTINEL_MASTER)


def sentinel_addresses(
    settings: conf.NotificationSettings | None = None,
) -> list[tuple[str, int]]:
    """Return ``REDIS_SENTINELS`` as (host, port) pairs, whichever form they were given in."""
    settings = settings or conf.get()
    return [sentinel_address(entry) for entry in settings.REDIS_SENTINELS]


def _sentinel_kwargs(settings: conf.NotificationSettings, overrides: dict[str, Any]) -> dict:
    timeout = overrides.get("socket_connect_timeout") or SENTINEL_TIMEOUT
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **settings.REDIS_SENTINEL_OPTIONS,
    }


def sync_client(**overrides: Any) -> redis.Redis:
    """Return a new sync client (PUBLISH, health) for the master; ``overrides`` are timeouts."""
    settings = conf.get()
    kwargs = conf.redis_kwargs(**overrides)
    if not uses_sentinel(settings):
        return redis.Redis.from_url(settings.REDIS_URL, **kwargs)
    sentinel = redis.sentinel.Sentinel(
        sentinel_addresses(settings), sentinel_kwargs=_sentinel_kwargs(settings, overrides)
    )
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER, **kwargs)


def async_client(**overrides: Any) -> aioredis.Redis:
    """Return a new asyncio client (the listener) for the master; close it with ``aclose``.

    Made inside the running loop, never at import time: an asyncio connection belongs to
    the loop that opened it.
    """
    settings = conf.get()
    kwargs = conf.redis_kwargs(**overrides)
    if not uses_sentinel(settings):
        return aioredis.Redis.from_url(settings.REDIS_URL, **kwargs)
    sentinel = aiosentinel.Sentinel(
        sentinel_addresses(settings), sentinel_kwargs=_sentinel_kwargs(settings, overrides)
    )
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER, **kwargs)


def close(client: redis.Redis) -> None:
    """Close a sync client and, for Sentinel, its connections to the sentinels."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    with contextlib.suppress(redis.RedisError, OSError):
        client.close()
    for sentinel in getattr(manager, "sentinels", []):
        with contextlib.suppress(redis.RedisError, OSError):
            sentinel.close()


async def aclose(client: aioredis.Redis) -> None:
    """Close an asyncio client and, for Sentinel, its connections to the sentinels.

    ``master_for`` leaves the sentinel clients to the caller; a listener that reconnects
    for days must not leak a socket per sentinel per reconnect.
    """
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    try:
        await client.aclose()
    finally:
        if manager is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await manager.aclose()


async def amaster_address(client: aioredis.Redis) -> tuple[str, int] | None:
    """Return where Sentinel says the master is now (None without Sentinel).

    Asking also drops the client's idle connections to a former master, so its next
    command goes to the current one.
    """
    pool = client.connection_pool
    if not isinstance(pool, aiosentinel.SentinelConnectionPool):
        return None
    host, port = await pool.get_master_address()
    return str(host), int(port)


def connection_address(connection: Any) -> tuple[str, int] | None:
    """Return the (host, port) a connection is connected to, when it has one."""
    host, port = getattr(connection, "host", None), getattr(connection, "port", None)
    if host is None or port is None:
        return None
    return str(host), int(port)


def describe(settings: conf.NotificationSettings | None = None) -> str:
    """Say where the app's Redis is, for logs: never a password."""
    settings = settings or conf.get()
    if uses_sentinel(settings):
        sentinels = ", ".join(f"{host}:{port}" for host, port in sentinel_addresses(settings))
        return f"Sentinel master {settings.REDIS_SENTINEL_MASTER!r} (sentinels {sentinels})"
    return redacted_url(settings.REDIS_URL)


def redacted_url(url: str) -> str:
    """Return a Redis URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
