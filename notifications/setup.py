"""Settings and process helpers for host sites: what the demo site learned the hard way.

Call these from ``settings.py`` and ``asgi.py`` instead of copying the demo's configuration::

    from notifications.setup import channel_layers, sqlite_database

    CHANNEL_LAYERS = channel_layers("redis://127.0.0.1:6379/0")
    # or, with Sentinel: channel_layers(sentinels=["s1:26379", "s2:26379"], master_name="m")
    DATABASES = {"default": sqlite_database(BASE_DIR / "db.sqlite3")}

This module is imported by settings files, so it imports nothing that needs Django set up.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

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

# The layer's own connections to the master block without a timeout, but a query to a
# sentinel (where is the master?) must not: one that answers nothing is skipped after this.
SENTINEL_SOCKET_TIMEOUT = 5
DEFAULT_SENTINEL_PORT = 26379

# Generation thresholds while many sockets are open; see tune_garbage_collector.
GC_THRESHOLD = (700, 10, 100)


def channel_layers(
    urls: str | Iterable[str] | None = None,
    *,
    sentinels: str | Iterable[Any] | None = None,
    master_name: str | None = None,
    sentinel_options: Mapping[str, Any] | None = None,
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

    With ``sentinels`` (``"host:port,host:port"``, or a list of such strings or (host, port)
    pairs) and ``master_name`` instead of ``urls``, the layer's one host is that Sentinel
    master: channels-redis asks the sentinels where it is for each new connection, so the
    layer follows a failover. The master's password and db go in ``options``; the sentinels'
    own (e.g. their password) in ``sentinel_options``.
    """
    host_options = dict(options or {})
    common = {
        "socket_timeout": None,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
        "max_connections": max_connections,
    }
    if sentinels is not None or master_name is not None:
        if urls is not None:
            raise ValueError("channel_layers() takes Redis URLs or Sentinel, not both")
        addresses = sentinel_addresses(sentinels or [])
        if not addresses or not master_name:
            raise ValueError("channel_layers() with Sentinel needs sentinels and a master_name")
        hosts: list[dict[str, Any]] = [
            {
                "sentinels": addresses,
                "master_name": master_name,
                **common,
                **host_options,
                "sentinel_kwargs": {
                    "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
                    "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
                    **dict(sentinel_options or {}),
                },
            }
        ]
    else:
        urls_given = _split_urls(urls or [])
        if not urls_given:
            raise ValueError("channel_layers() needs at least one Redis URL")
        hosts = [{"address": address, **common, **host_options} for address in urls_given]
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": hosts, "capacity": capacity, "expiry": expiry, "prefix": prefix},
        }
    }


def _split_urls(urls: str | Iterable[str]) -> list[str]:
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    return [str(item).strip() for item in items if str(item).strip()]


def sentinel_address(entry: Any) -> tuple[str, int]:
    """Return a sentinel given as ``"host:port"``, ``"host"`` or (host, port) as a pair.

    Raise ValueError saying what is wrong: settings files and the system checks share it.
    """
    if isinstance(entry, str):
        host, sep, port_text = entry.strip().rpartition(":")
        if not sep:
            host, port_text = entry.strip(), str(DEFAULT_SENTINEL_PORT)
        host = host.strip("[]")  # [::1]:26379
        if not host or not port_text.isdigit():
            raise ValueError("not host:port")
        port: Any = int(port_text)
    elif isinstance(entry, list | tuple) and len(entry) == 2:
        host, port = entry
        if not isinstance(host, str) or not host:
            raise ValueError("the host is not a name")
    else:
        raise ValueError("not (host, port) or host:port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("the port is not a TCP port")
    return host, port


def sentinel_addresses(sentinels: str | Iterable[Any]) -> list[tuple[str, int]]:
    """Return sentinels (``"h:p,h:p"`` or a list of strings and pairs) as (host, port) pairs."""
    items = (
        [item for item in sentinels.split(",") if item.strip()]
        if isinstance(sentinels, str)
        else list(sentinels)
    )
    return [sentinel_address(item) for item in items]


def sentinel_master_options(url: str) -> dict[str, Any]:
    """Return what a Redis URL says about a Sentinel master besides where it is.

    Lets a site keep one ``REDIS_URL`` setting when it moves to Sentinel: the master's
    password (and username), database number and TLS (``rediss://``) carry over as client
    keyword arguments; the host and port do not (the sentinels name the master).
    """
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    database = parts.path.strip("/")
    if database.isdigit():
        options["db"] = int(database)
    if parts.password:
        options["password"] = unquote(parts.password)
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.scheme == "rediss":
        options["ssl"] = True
    return options


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
