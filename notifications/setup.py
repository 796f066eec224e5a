"""Settings and process helpers for host sites: what the demo site learned the hard way.

Call these from ``settings.py`` and ``asgi.py`` instead of copying the demo's configuration::

    from notifications.setup import channel_layers, sqlite_database

    CHANNEL_LAYERS = channel_layers("redis://127.0.0.1:6379/0")
    DATABASES = {"default": sqlite_database(BASE_DIR / "db.sqlite3")}

This module is imported by settings files, so it imports nothing that needs Django set up.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Mapping
from typing import Any

# redis-py 8 gives every socket a 5 s read timeout, the same 5 s that channels-redis blocks
# on BZPOPMIN: idle consumers would crash about every 5 s and close with 1011
# (redis-py#4091). None blocks as long as the layer asks; connects still time out.
SOCKET_CONNECT_TIMEOUT = 5
# channels-redis's async pool defaults to 100 connections per host, and bursts of
# handshakes or disconnects then raise MaxConnectionsError; one daphne process serves
# thousands of sockets.
MAX_CONNECTIONS = 1000
# RedisChannelLayer drops messages silently to a channel already holding `capacity` (default
# 100): a burst of pushes to a busy process would lose frames.
CAPACITY = 5000
# Seconds a message waits in a channel before it is dropped: the bell's ping-and-sync
# recovers anything older from the database anyway.
EXPIRY = 60

# Generation thresholds while many sockets are open; see tune_garbage_collector.
GC_THRESHOLD = (700, 10, 100)


def channel_layers(
    urls: str | Iterable[str],
    *,
    max_connections: int = MAX_CONNECTIONS,
    capacity: int = CAPACITY,
    expiry: int = EXPIRY,
    prefix: str = "asgi",
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a ``CHANNEL_LAYERS`` setting with the safe channels-redis options.

    ``urls`` is one Redis URL or several (comma-separated or a list): with several, channels
    spreads groups and channels over them by consistent hashing (shards). ``options`` are
    extra redis-py keyword arguments for every host, e.g. ``{"ssl_ca_certs": path}`` for a
    ``rediss://`` URL signed by a private CA. ``prefix`` keeps sites sharing a Redis apart.
    """
    addresses = _split_urls(urls)
    if not addresses:
        raise ValueError("channel_layers() needs at least one Redis URL")
    host_options = dict(options or {})
    hosts = [
        {
            "address": address,
            "socket_timeout": None,
            "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
            "max_connections": max_connections,
            **host_options,
        }
        for address in addresses
    ]
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": hosts, "capacity": capacity, "expiry": expiry, "prefix": prefix},
        }
    }


def _split_urls(urls: str | Iterable[str]) -> list[str]:
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    return [str(item).strip() for item in items if str(item).strip()]


def sqlite_database(path: str | os.PathLike[str], *, timeout: float = 30) -> dict[str, Any]:
    """Return a SQLite ``DATABASES`` entry that several processes can write at once.

    daphne, the listener and management commands write concurrently. ``timeout`` waits for
    the lock instead of failing; ``IMMEDIATE`` takes the write lock at BEGIN, so no
    transaction deadlocks upgrading a read lock (Django's default DEFERRED gave "database is
    locked" tracebacks in the listener's one-user batches); WAL lets readers proceed while a
    writer works, and ``synchronous=NORMAL`` is WAL's safe, faster setting.
    """
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.fspath(path),
        "OPTIONS": {
            "timeout": timeout,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def tune_garbage_collector(threshold: tuple[int, int, int] = GC_THRESHOLD) -> None:
    """Keep full garbage collections from stalling a process that holds thousands of sockets.

    A full (generation 2) collection scans every live object, and a daphne process with
    thousands of sockets holds millions: each one stalled every push for 300-600 ms (measured
    with 5,000 sockets: P1 p99 416 ms before, 66 ms after). What start-up created lives
    forever anyway, so it is frozen out of the collector's way, and full collections run ten
    times less often; cyclic garbage from closed sockets is still collected, in fewer, later
    passes. Call it once, at the end of asgi.py, after everything is imported.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)
