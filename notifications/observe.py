"""Tell watchers what the pipeline does: one small pub/sub message per event, best effort.

``manage.py watch_notifications`` subscribes to ``<CHANNEL>:watch`` (and to ``CHANNEL``
itself, for ``created``). The listener, the services and the consumer call ``emit`` /
``aemit`` as things happen::

    {"v": 1, "event": "dispatched", "at": "2026-01-31T09:00:00.123+00:00", "id": 42, ...}

Events and their fields: ``dispatched(id, audience, recipients)``, ``delivered(user, ids)``,
``read(user, ids)``, ``archived`` / ``unarchived`` / ``unread(user, ids)``,
``snoozed(user, ids, until)``, ``returned(user, ids)``, ``expired(id)``, ``recalled(id)``,
``edited(id)``; ``user`` is
``str(pk)``. (``created`` is the save hook's own message on ``CHANNEL``.)

Watching is for people at a terminal, so it must cost the pipeline nothing: a call never
raises, never waits longer than ``DEADLINE_SECONDS``, and once PUBLISH says nobody is
subscribed (or Redis does not answer) the process skips every event for
``SKIP_SECONDS``, so the hot path pays one clock read per event when no watcher runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import date, datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from django.utils import timezone
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifications import conf, redis_clients

logger = logging.getLogger(__name__)

WATCH_VERSION = 1
WATCH_SUFFIX = ":watch"
# The longest one event may hold up its caller (a dispatch, a request, a socket frame).
# A healthy Redis answers a PUBLISH in about a millisecond; a loaded 2-core box in tens.
# Missing a watch line costs nothing, so the deadline is short (not deadlines.PUSH_SECONDS).
DEADLINE_SECONDS = 0.2
# After PUBLISH answers "0 subscribers" (or fails), skip events for this long: a watcher
# that starts sees events within 2 s, and a site nobody watches pays one PUBLISH per 2 s
# per process, not one per event.
SKIP_SECONDS = 2.0

_lock = threading.Lock()
_skip_until = 0.0
_client: redis.Redis | None = None
_client_made_for: conf.NotificationSettings | None = None
# One asyncio client per event loop: a connection belongs to the loop that opened it.
_aclient: aioredis.Redis | None = None
_aclient_loop: asyncio.AbstractEventLoop | None = None
_aclient_made_for: conf.NotificationSettings | None = None


def watch_channel(settings: conf.NotificationSettings | None = None) -> str:
    """Return the pub/sub channel watchers subscribe to: ``CHANNEL`` + ``":watch"``."""
    return (settings or conf.get()).CHANNEL + WATCH_SUFFIX


def build_message(event: str, fields: dict[str, Any]) -> str:
    """Return the JSON of one watch event; datetimes become ISO 8601 with their offset."""
    message = {"v": WATCH_VERSION, "event": event, "at": timezone.now().isoformat(), **fields}
    return json.dumps(message, default=_jsonable, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _skipping() -> bool:
    return time.monotonic() < _skip_until


def _skip() -> None:
    global _skip_until
    _skip_until = time.monotonic() + SKIP_SECONDS


def emit(event: str, **fields: Any) -> None:
    """Publish one watch event; never raise, wait at most ``DEADLINE_SECONDS``."""
    if _skipping():
        return
    try:
        receivers = _get_client().publish(watch_channel(), build_message(event, fields))
    except Exception as exc:  # watching must never break what it watches
        _skip()
        logger.debug("Watch event %r not published (%s)", event, exc)
        return
    if not receivers:
        _skip()


async def aemit(event: str, **fields: Any) -> None:
    """Publish one watch event from a coroutine; never raise, wait at most the deadline.

    ``CancelledError`` still propagates: the caller's task is being stopped.
    """
    if _skipping():
        return
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            client = _get_aclient()
            receivers = await client.publish(watch_channel(), build_message(event, fields))
    except Exception as exc:  # TimeoutError, RedisError, OSError, bad fields
        _skip()
        logger.debug("Watch event %r not published (%s)", event, exc)
        return
    if not receivers:
        _skip()


def _client_options() -> dict[str, Any]:
    return {
        "socket_timeout": DEADLINE_SECONDS,
        "socket_connect_timeout": DEADLINE_SECONDS,
        "health_check_interval": 30,
    }


def _get_client() -> redis.Redis:
    """Return this process's sync client, made on first use and after a settings change."""
    global _client, _client_made_for
    settings = conf.get()
    with _lock:
        if _client is None or _client_made_for != settings:
            if _client is not None:
                redis_clients.close(_client)
            # No retries: a retry would double the deadline for a line nobody may read.
            _client = redis_clients.sync_client(**_client_options(), retry=Retry(NoBackoff(), 0))
            _client_made_for = settings
        return _client


def _get_aclient() -> aioredis.Redis:
    """Return the running loop's asyncio client, made on first use in that loop."""
    global _aclient, _aclient_loop, _aclient_made_for
    settings = conf.get()
    loop = asyncio.get_running_loop()
    if _aclient is None or _aclient_loop is not loop or _aclient_made_for != settings:
        # A client of another (finished) loop cannot be closed from this one; it is dropped.
        _aclient = redis_clients.async_client(**_client_options(), retry=AsyncRetry(NoBackoff(), 0))
        _aclient_loop = loop
        _aclient_made_for = settings
    return _aclient


def reset() -> None:
    """Forget the clients and the skip window (tests, and after settings change)."""
    global _client, _client_made_for, _aclient, _aclient_loop, _aclient_made_for, _skip_until
    with _lock:
        if _client is not None:
            redis_clients.close(_client)
        _client = None
        _client_made_for = None
        _aclient = None
        _aclient_loop = None
        _aclient_made_for = None
        _skip_until = 0.0
