"""Database calls from async code: threads that share no state, and surviving a database outage.

The listener runs for weeks; PostgreSQL restarts, fails over, and SQLite is busy for a while.
What it needs from here: to tell an outage from a bad row (``database_unavailable``), to drop
the connections an outage broke, in the thread that holds them (``discard_connections``), and
to ask cheaply whether the database is back without queueing on a pool that is still backing
off (``probe_database``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

from notifications import conf

logger = logging.getLogger(__name__)

# A probe that takes longer than this counts as a failure: long enough for a connect over a
# loaded network, short enough that SIGTERM during an outage is answered promptly.
PROBE_TIMEOUT = 3.0


def db_async(func: Callable[..., Any]) -> Any:
    """Return an async twin of ``func`` run on a pool thread, with a connection of its own.

    Channels' default (thread-sensitive) runs every query of every socket of a daphne
    process on one thread: with thousands of sockets, hellos, acks and pings queue behind
    each other. These functions share no state between calls, so any thread will do.

    They also share this process's ``breaker``: once one of them finds the database
    unavailable, the others fail at once (``DatabaseUnavailable``) instead of each waiting
    on a dead server or a pool's back-off, and a probe lets them through again as soon as
    the database answers.
    """

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        breaker.before_call()
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if database_unavailable(exc):
                breaker.trip(exc)
            raise
        finally:
            keep_sqlite_connections()

    return database_sync_to_async(call, thread_sensitive=False)


def keep_sqlite_connections() -> None:
    """Let this pool thread keep its SQLite connections for its next call.

    ``database_sync_to_async`` closes a connection past its ``CONN_MAX_AGE`` after every
    call, and with the default of 0 that is every one: each ack, ping and sync of a daphne
    process opened a SQLite file anew and ran its PRAGMAs (12% of daphne's CPU under bell
    traffic, measured with py-spy). The pool's threads live as long as the process, so their
    connections can too; a broken one is still closed (Django checks ``errors_occurred`` and
    the autocommit state first). PostgreSQL's are left alone: its pool takes them back.
    """
    for wrapper in connections.all(initialized_only=True):
        if wrapper.vendor == "sqlite" and wrapper.connection is not None:
            wrapper.close_at = None


class DatabaseUnavailable(OperationalError):
    """Raised at once, with no query sent, while this process knows the database is down."""


class Breaker:
    """Per process: after the database is found unavailable, fail fast until a probe answers.

    A daphne process whose database has gone away otherwise holds every handshake, ping and
    sync for as long as a checkout from its pool may wait (30 s by default), and after the
    database returns it waits for the pool's own reconnect back-off (1, 2, 4, 8, 16 s…): the
    bells would stay dark for many seconds after the outage. Here, one call at a time probes
    (``probe_database``, beside the pool), at most once every ``RECONNECT_MIN_DELAY`` with
    jitter; the probe that succeeds discards the pool, so the next query connects afresh.
    One warning when the database goes, one when it is back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self._next_probe = 0.0
        self._probing = False

    @property
    def open(self) -> bool:
        """Whether calls fail fast now (the database was found unavailable)."""
        return self.down_since is not None

    def before_call(self) -> None:
        """Return if the call may go ahead; raise DatabaseUnavailable while the breaker is open."""
        with self._lock:
            if self.down_since is None:
                return
            if self._probing or time.monotonic() < self._next_probe:
                raise DatabaseUnavailable("the database is unavailable; retrying shortly")
            self._probing = True
        try:
            probe_database()
        except Exception as exc:
            with self._lock:
                self._probing = False
                self._next_probe = time.monotonic() + self._interval()
            raise DatabaseUnavailable(f"the database is unavailable ({_first_line(exc)})") from exc
        with self._lock:
            down_for = time.monotonic() - (self.down_since or time.monotonic())
            self.down_since = None
            self._probing = False
        logger.warning("Database back after %.1f s", down_for)

    def trip(self, exc: BaseException) -> None:
        """Open the breaker after ``exc``; close this thread's connections (and, the first
        time, the pool's: its idle connections died with the server)."""
        with self._lock:
            first = self.down_since is None
            if first:
                self.down_since = time.monotonic()
                self._next_probe = self.down_since + self._interval()
        discard_connections(pool=first)
        if first:
            logger.warning(
                "Database unavailable (%s: %s); failing fast until it answers again",
                type(exc).__name__,
                _first_line(exc),
            )

    def reset(self) -> None:
        """Close the breaker without a probe (tests)."""
        with self._lock:
            self.down_since = None
            self._probing = False

    @staticmethod
    def _interval() -> float:
        delay = conf.get().RECONNECT_MIN_DELAY
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not secrecy


breaker = Breaker()


def _first_line(exc: BaseException) -> str:
    """Return the first line of an error's message (libpq's run to several), for one log line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def db_async_discarding(func: Callable[..., Any], *, thread_sensitive: bool = True) -> Any:
    """Return ``database_sync_to_async(func)`` that cleans up after an unavailable database.

    When ``func`` raises an error for which ``database_unavailable`` is true, the
    connections of the thread that ran it (and any pool) are discarded there, before the
    error reaches the caller: only that thread can close them, and the next call must not
    be handed the same dead connection.
    """

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if database_unavailable(exc):
                discard_connections()
            raise
        finally:
            # The listener's dispatch opened a SQLite file anew per batch otherwise (8% of
            # its CPU under P1's load, py-spy).
            keep_sqlite_connections()

    return database_sync_to_async(call, thread_sensitive=thread_sensitive)


def database_unavailable(exc: BaseException) -> bool:
    """Return whether ``exc`` says the database (not one row or statement) is at fault.

    ``OperationalError`` is a lost or refused connection, a server shutting down, a failover,
    SQLite's "database is locked"; ``InterfaceError`` a connection already closed. Retrying
    such a failure at once, or one notification at a time, only fails again: the caller
    backs off instead. Anything else (an integrity or data error) belongs to the rows.
    """
    return isinstance(exc, (OperationalError, InterfaceError))


def discard_connections(*, pool: bool = True) -> None:
    """Close this thread's database connections, and (with ``pool``) throw away any pool.

    Call it in the thread that met the error: Django's connections are per thread. A pool
    keeps idle connections that an outage killed without telling it (the site's pool has
    no per-checkout health check, for speed), and a pool whose own reconnects are backing
    off makes each checkout wait out its timeout; a fresh pool connects at first use.
    """
    for alias in connections:
        wrapper = connections[alias]
        # Closing a broken connection may fail too; either way it is gone.
        with contextlib.suppress(Exception):
            wrapper.close()
        if pool and getattr(wrapper, "pool", None) is not None:
            with contextlib.suppress(Exception):  # closed already by another thread
                wrapper.close_pool()


def limit_pool_checkout(seconds: float) -> None:
    """Make every PostgreSQL pool of this process give up a checkout after ``seconds``.

    psycopg_pool waits up to 30 s for a connection, and with the server gone and its own
    reconnects backing off, every checkout waits that long: the caller notices the outage
    only then, and cannot stop before. For a process that needs a handful of connections
    (the listener), a wait this long only ever means the database is unavailable. Call it
    before the first query; a pool made already is discarded, to be made anew with it.
    """
    for alias in connections:
        wrapper = connections[alias]
        if wrapper.vendor != "postgresql":
            continue
        options = wrapper.settings_dict.setdefault("OPTIONS", {})
        pool = options.get("pool")
        if not pool:
            continue
        if not isinstance(pool, dict):
            pool = options["pool"] = {}
        pool["timeout"] = min(float(pool.get("timeout", seconds)), seconds)
        with contextlib.suppress(Exception):
            wrapper.close_pool()


def probe_database(alias: str = DEFAULT_DB_ALIAS, timeout: float = PROBE_TIMEOUT) -> None:
    """Connect and run ``SELECT 1``; raise the database's error if it is not back yet.

    On PostgreSQL the probe connects with a connect timeout of its own (libpq waits forever
    by default for a host that drops packets), and beside any pool (a pool's checkout would
    wait out its own back-off); once it answers, the pool is discarded, so the next query
    starts a fresh one instead of being handed a connection the outage killed.
    """
    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            wrapper.close()
        return
    params = wrapper.get_connection_params()
    params["connect_timeout"] = max(1, math.ceil(timeout))
    with wrapper.wrap_database_errors:
        raw = wrapper.Database.connect(**params)
        try:
            with raw.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            raw.close()
    if getattr(wrapper, "pool", None) is not None:
        discard_connections()
