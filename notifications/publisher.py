"""Redis PUBLISH of committed notifications; a failure is logged, never raised into a save."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import redis
from django.db import transaction
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifications import conf, redis_clients
from notifications.events import build_created_message, build_wake_message

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_client: redis.Redis | None = None
# The settings the client was made from: a change (override_settings, Sentinel on or off)
# makes a new one.
_client_made_for: conf.NotificationSettings | None = None
_skip_until = 0.0


def publish_on_commit(notification_id: int, using: str | None = None) -> None:
    """Publish the news of ``notification_id`` once the current transaction commits.

    Outside a transaction (autocommit) it publishes at once; on rollback, never.
    """
    transaction.on_commit(lambda: _publish_now_unsafe(notification_id), using=using)


def _publish_now_unsafe(notification_id: int) -> bool:
    """PUBLISH immediately. Unsafe before commit: the listener could read no row.

    Returns True when Redis took the message. Any failure leaves the row undispatched for
    the listener's sweep, and mutes publishing for PUBLISH_BACKOFF seconds so requests do
    not each wait for a timeout while Redis is down.
    """
    global _skip_until
    settings = conf.get()
    if time.monotonic() < _skip_until:
        logger.debug("Redis marked down; notification %s left for the sweep", notification_id)
        return False
    try:
        receivers = _get_client().publish(settings.CHANNEL, build_created_message(notification_id))
    except redis.RedisError as exc:
        _skip_until = time.monotonic() + settings.PUBLISH_BACKOFF
        logger.warning(
            "Could not publish notification %s (%s); the listener's sweep will dispatch it",
            notification_id,
            exc,
        )
        return False
    if receivers == 0:
        logger.info(
            "No listener is subscribed to %r; notification %s waits for the sweep",
            settings.CHANNEL,
            notification_id,
        )
    return True


def publish_wake_on_commit(at: datetime, using: str | None = None) -> None:
    """Ask the listeners, once the transaction commits, to wake at ``at`` (a snooze's end).

    Best effort, like every publish: a lost message costs lateness, not the snooze — the
    listener's sweep plans its next wake-up from the database too.
    """
    transaction.on_commit(lambda: _publish_wake_now(at), using=using)


def _publish_wake_now(at: datetime) -> bool:
    global _skip_until
    settings = conf.get()
    if time.monotonic() < _skip_until:
        return False
    try:
        _get_client().publish(settings.CHANNEL, build_wake_message(at))
    except redis.RedisError as exc:
        _skip_until = time.monotonic() + settings.PUBLISH_BACKOFF
        logger.warning("Could not announce a wake-up at %s (%s); the sweep plans it", at, exc)
        return False
    return True


def _get_client() -> redis.Redis:
    """Return this process's Redis client, made on first use (never at import time).

    Under Sentinel it finds the master on each new connection: after a failover the first
    PUBLISH fails (the row waits for the sweep), and the next, after PUBLISH_BACKOFF,
    connects to the new master.
    """
    global _client, _client_made_for
    settings = conf.get()
    with _lock:
        if _client is None or _client_made_for != settings:
            if _client is not None:
                redis_clients.close(_client)
            _client = redis_clients.sync_client(
                socket_timeout=settings.PUBLISH_TIMEOUT,
                socket_connect_timeout=settings.PUBLISH_TIMEOUT,
                health_check_interval=30,
                # No retries: a save must not wait out a back-off loop while Redis is down.
                retry=Retry(NoBackoff(), 0),
            )
            _client_made_for = settings
        return _client


def reset() -> None:
    """Forget the client and any back-off (tests, and after settings change)."""
    global _client, _client_made_for, _skip_until
    with _lock:
        if _client is not None:
            redis_clients.close(_client)
        _client = None
        _client_made_for = None
        _skip_until = 0.0
