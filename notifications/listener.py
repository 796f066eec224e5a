"""The long-running loop: subscribe, receive, dispatch in batches, sweep, reconnect, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from channels.layers import BaseChannelLayer, get_channel_layer
from django import db as django_db
from django.utils import timezone

from notifications import conf, heartbeat, redis_clients
from notifications.asyncdb import (
    PROBE_TIMEOUT,
    database_unavailable,
    db_async_discarding,
    limit_pool_checkout,
    probe_database,
)
from notifications.dispatch import (
    Dispatched,
    afan_out,
    apush_expired,
    apush_returned,
    claim_broadcast,
    dispatch_one_user_batch,
    due_notification_ids,
    expired_between,
    expired_by_group,
    next_expiry_after,
    next_scheduled_at,
    record_broadcast,
    unrecorded_notification_ids,
)
from notifications.events import EventError, build_probe_message, parse_pubsub_event
from notifications.models import Notification
from notifications.observe import aemit
from notifications.services import deliveries_return_snoozed, next_snooze_due_at

logger = logging.getLogger(__name__)

# Most ids handled in one trip to the database thread: big enough to amortise the hop under
# a burst, small enough that a stop request waits for at most a fraction of a second.
BATCH_SIZE = 500
# The channel layer blocks without a socket timeout (see settings); a push that hangs longer
# than this is abandoned, so a stalled Redis cannot stall dispatching to the database.
FAN_OUT_TIMEOUT = 5.0
# Pushes in flight at once: enough to hide Redis round trips, few enough to stay well
# inside the channel layer's connection pool.
PUSH_CONCURRENCY = 50
# How long one wait for a pub/sub message may last before the loop looks at its stop flag
# and its timers again.
POLL_SECONDS = 0.5


class NotificationListener:
    """Subscribe to the notifications channel and dispatch what it announces.

    ``run()`` returns when ``stop()`` is called (or SIGINT/SIGTERM arrives, when
    ``handle_signals`` is set); with ``once`` it dispatches the backlog and returns.
    """

    def __init__(
        self,
        *,
        once: bool = False,
        handle_signals: bool = True,
        layer: BaseChannelLayer | None = None,
        on_dispatched: Callable[[Dispatched], None] | None = None,
    ) -> None:
        self.settings = conf.get()
        self.once = once
        self.handle_signals = handle_signals
        self.layer = layer
        self.on_dispatched = on_dispatched
        self.dispatched_total = 0
        self.started_at = time.time()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_scheduled: float | None = None
        # Expiries up to this moment have been announced (older ones are not news).
        self._expiry_seen_until = timezone.now()
        # A database outage (see _database_failed): when it began, when to try again (the
        # loop's next sweep), and the back-off after that; all None/minimal while it answers.
        self._db_down_since: float | None = None
        self._db_retry_at: float | None = None
        self._db_delay = self.settings.RECONNECT_MIN_DELAY
        self._db_attempts = 0
        self._db_last_attempt = 0.0
        self._broadcasts: dict[int, asyncio.Task[None]] = {}
        self._broadcast_slot: asyncio.Semaphore | None = None
        self._record_slot: asyncio.Semaphore | None = None
        # Set while subscribed; tests and the health report wait on it.
        self.subscribed: asyncio.Event | None = None
        # The nonce of the probe in flight (see _send_probe); None once it came back.
        self._probe_nonce: str | None = None

    # ---- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return; safe from any thread."""
        if self._loop is None or self._stop is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> None:
        """Run until stopped; with ``once``, until the backlog is empty."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.subscribed = asyncio.Event()
        # One broadcast claimed and pushed at a time, and one recorded at a time: the next
        # broadcast's push does not wait for the last one's rows.
        self._broadcast_slot = asyncio.Semaphore(1)
        self._record_slot = asyncio.Semaphore(1)
        self.layer = self.layer or get_channel_layer()
        # A pooled checkout that waits longer than a probe would means the database is gone:
        # notice it then (and stay stoppable), not after the pool's 30 s.
        limit_pool_checkout(PROBE_TIMEOUT)
        installed = self._install_signal_handlers()
        try:
            if self.once:
                await self.sweep()
            else:
                await self._run_forever()
        finally:
            await self._await_broadcasts()
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            logger.info(
                "Listener stopped after dispatching %d notification(s)", self.dispatched_total
            )

    def _install_signal_handlers(self) -> list[signal.Signals]:
        if not self.handle_signals or self._loop is None:
            return []
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                continue
            installed.append(sig)
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("Received %s; finishing the current batch", sig.name)
        assert self._stop is not None  # noqa: S101
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # ---- the loop ------------------------------------------------------------------------

    async def _run_forever(self) -> None:
        delay = self.settings.RECONNECT_MIN_DELAY
        while not self.stopping:
            try:
                await self._session()
                delay = self.settings.RECONNECT_MIN_DELAY
            except (redis.RedisError, OSError) as exc:
                assert self.subscribed is not None  # noqa: S101
                self.subscribed.clear()
                # Full jitter: several listeners cut off together must not reconnect in step.
                wait = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311
                logger.warning("Redis connection lost (%s); reconnecting in %.1f s", exc, wait)
                await self._sleep(wait)
                delay = min(delay * 2, self.settings.RECONNECT_MAX_DELAY)
                # No sweep while Redis is away: its pushes would be lost on the layer. The
                # sweep that follows every (re)subscribe catches up instead.
            except Exception as exc:
                # Database errors are handled where they happen (handle_ids, sweep); this is
                # the net for whatever escaped them: never the end of the listener.
                assert self.subscribed is not None  # noqa: S101
                self.subscribed.clear()
                wait = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311
                if isinstance(exc, django_db.Error):
                    self._database_failed(exc, "receiving")
                    logger.warning("Starting a new session in %.1f s", wait)
                else:
                    logger.exception("Listener session failed; starting a new one in %.1f s", wait)
                await self._sleep(wait)
                delay = min(delay * 2, self.settings.RECONNECT_MAX_DELAY)

    async def _session(self) -> None:
        """One connection's life: subscribe, catch up, then receive until stopped or cut."""
        settings = self.settings
        # Made anew for each session: under Sentinel, each asks where the master is now.
        client = self._subscriber_client()
        commands = self._commands_client()
        pubsub = client.pubsub()
        self._probe_nonce = None
        try:
            await pubsub.subscribe(settings.CHANNEL)
            await self._await_subscription(pubsub)
            logger.info(
                "Subscribed to %r at %s", settings.CHANNEL, redis_clients.describe(settings)
            )
            assert self.subscribed is not None  # noqa: S101
            self.subscribed.set()
            await self._beat(commands)
            # Whatever was announced while we were away is in the database: catch up.
            await self.sweep()
            await self._receive_until_stopped(pubsub, commands)
        finally:
            closing_all = (
                pubsub.aclose(),
                redis_clients.aclose(client),
                redis_clients.aclose(commands),
            )
            for closing in closing_all:
                with contextlib.suppress(redis.RedisError, OSError):
                    await asyncio.wait_for(closing, timeout=2)

    def _subscriber_client(self) -> aioredis.Redis:
        """Return the client the subscription uses.

        It blocks on reads for as long as it likes; liveness is ours to judge (PING and a
        probe, each with a deadline), not a socket timeout's.
        """
        return redis_clients.async_client(socket_timeout=None, socket_connect_timeout=5)

    def _commands_client(self) -> aioredis.Redis:
        """Return the client for heartbeats and probes: where the publishers publish."""
        return redis_clients.async_client(socket_timeout=5, socket_connect_timeout=5)

    async def _await_subscription(self, pubsub: aioredis.client.PubSub) -> None:
        """Wait for Redis to confirm SUBSCRIBE; a silent server is a dead one."""
        deadline = time.monotonic() + self.settings.HEALTH_CHECK_TIMEOUT
        while time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message and message["type"] == "subscribe":
                return
        raise redis.ConnectionError("Redis did not confirm SUBSCRIBE in time")

    async def _receive_until_stopped(
        self, pubsub: aioredis.client.PubSub, commands: aioredis.Redis
    ) -> None:
        settings = self.settings
        now = time.monotonic()
        next_sweep = now + settings.SWEEP_INTERVAL
        last_heard = now
        # The idle health check, in flight since then: a PING on the subscription (a
        # half-open connection never errors on its own) and a probe to our own channel
        # (a subscription on a demoted master still answers PING but receives nothing).
        check_sent: float | None = None
        pong_seen = False
        while not self.stopping:
            now = time.monotonic()
            if self._sweep_due(now, next_sweep):
                await self._beat(commands)
                await self.sweep()
                next_sweep = time.monotonic() + settings.SWEEP_INTERVAL
                if check_sent is not None:
                    # Not reading while sweeping: that time is not the probe's.
                    check_sent += next_sweep - settings.SWEEP_INTERVAL - now
                continue
            if check_sent is not None and self._probe_nonce is None:
                check_sent = None  # the probe came back: this subscription receives
                last_heard = now
            if check_sent is not None and now - check_sent > settings.HEALTH_CHECK_TIMEOUT:
                raise redis.ConnectionError(
                    f"the subscription answers PING but its probe did not come back within "
                    f"{settings.HEALTH_CHECK_TIMEOUT:g} s (a demoted or cut-off master?)"
                    if pong_seen
                    else f"no answer to PING within {settings.HEALTH_CHECK_TIMEOUT:g} s"
                )
            if check_sent is None and now - last_heard > settings.HEALTH_CHECK_INTERVAL:
                await pubsub.ping()
                await self._send_probe(pubsub, commands)
                check_sent, pong_seen = now, False
            wake = self._next_wake(next_sweep)
            message = await pubsub.get_message(timeout=min(POLL_SECONDS, max(0.0, wake - now)))
            if message is None:
                continue
            last_heard = time.monotonic()
            if message.get("type") == "pong":
                pong_seen = True
            batch = [message]
            while len(batch) < BATCH_SIZE:
                more = await pubsub.get_message(timeout=0)
                if more is None:
                    break
                batch.append(more)
            handling = time.monotonic()
            await self.handle_messages(batch)
            if check_sent is not None:
                check_sent += time.monotonic() - handling  # a long batch is not the probe's

    async def _send_probe(self, pubsub: aioredis.client.PubSub, commands: aioredis.Redis) -> None:
        """Publish a probe to our own channel, on the master the publishers use now.

        Under Sentinel, ask where the master is first (which also moves the commands
        client's idle connections there): a subscription on another server is on a former
        master, and is given up at once. The probe itself is the proof without Sentinel too.
        """
        timeout = self.settings.HEALTH_CHECK_TIMEOUT
        nonce = secrets.token_hex(8)
        self._probe_nonce = nonce
        try:
            master = await asyncio.wait_for(redis_clients.amaster_address(commands), timeout)
        except (redis.RedisError, OSError) as exc:
            # The sentinels are away, not necessarily the master: let the probe tell.
            logger.warning("Could not ask the sentinels where the master is (%s)", exc)
            master = None
        subscribed_at = redis_clients.connection_address(pubsub.connection)
        if master is not None and subscribed_at is not None and master != subscribed_at:
            raise redis.ConnectionError(
                f"the master is now at {master[0]}:{master[1]}, the subscription still on "
                f"{subscribed_at[0]}:{subscribed_at[1]}"
            )
        try:
            await asyncio.wait_for(
                commands.publish(self.settings.CHANNEL, build_probe_message(nonce)), timeout
            )
        except TimeoutError as exc:
            raise redis.ConnectionError(f"the probe's PUBLISH took over {timeout:g} s") from exc

    async def _beat(self, commands: aioredis.Redis) -> None:
        """Write this listener's heartbeat, which ``notifications_health`` reads."""
        try:
            await heartbeat.awrite(commands, self.heartbeat_fields())
        except (redis.RedisError, OSError) as exc:
            logger.warning("Could not write the listener heartbeat (%s)", exc)

    def heartbeat_fields(self) -> dict[str, object]:
        return {
            "dispatched": self.dispatched_total,
            "started": self.started_at,
            "database": "down" if self.database_down else "ok",
        }

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None  # noqa: S101
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    # ---- work ----------------------------------------------------------------------------

    async def handle_messages(self, messages: list[dict]) -> int:
        """Dispatch the notifications a batch of pub/sub messages announces."""
        ids: list[int] = []
        for message in messages:
            if message.get("type") != "message":
                continue
            try:
                event = parse_pubsub_event(message["data"])
            except EventError as exc:
                logger.warning("Ignoring a malformed message on %r: %s", self.settings.CHANNEL, exc)
                continue
            if event.event == "wake":
                # A snooze ends then: bring it back on time, not a sweep later.
                assert event.at is not None  # noqa: S101 - a wake event always has one
                self._plan_at(event.at)
                continue
            if event.event == "probe":
                # Ours proves the subscription receives; another listener's means nothing here.
                if event.nonce == self._probe_nonce:
                    self._probe_nonce = None
                continue
            assert event.id is not None  # noqa: S101 - a created event always has one
            ids.append(event.id)
        return await self.handle_ids(ids)

    async def handle_ids(self, ids: list[int]) -> int:
        """Claim and record ``ids`` in the database, then push what this process claimed.

        A database error is noted (``_database_failed``), never raised: the loop goes on
        receiving. While the database is down nothing is tried at all: the ids are
        committed rows, and the sweep that ends the outage dispatches them.
        """
        if not ids:
            return 0
        if self.database_down:
            logger.debug("Database down: %d announced notification(s) left for the sweep", len(ids))
            self._retry_database_soon()
            return 0
        try:
            return await self._dispatch_ids(ids)
        except django_db.Error as exc:
            self._database_failed(exc, f"dispatching {len(ids)} announced notification(s)")
            return 0

    async def _dispatch_ids(self, ids: list[int]) -> int:
        """Dispatch ``ids`` (database errors raised); plan a wake-up for scheduled ones."""
        if not ids:
            return 0
        started = time.perf_counter()
        results, broadcasts, scheduled = await db_async_discarding(_claim_batch)(ids)
        if scheduled:
            # Announced at creation, due later: wake up for it then, not a sweep after.
            self._plan_at(min(scheduled.values()))
            broadcasts = [i for i in broadcasts if i not in scheduled]
        await self._finish(results)
        for notification_id in broadcasts:
            self._start_broadcast(notification_id)
        if len(ids) > 1:
            logger.info(
                "Batch of %d announced, %d dispatched in %.1f ms",
                len(ids),
                len(results),
                (time.perf_counter() - started) * 1000,
            )
        return len(results)

    async def _finish(self, results: list[Dispatched]) -> None:
        await self._push(results)
        for result in results:
            self._log(result)
            await self._observe(result)
            if self.on_dispatched:
                self.on_dispatched(result)
        self.dispatched_total += len(results)

    def _start_broadcast(self, notification_id: int) -> None:
        """Dispatch a group/staff/all notification beside the main loop, one at a time."""
        if notification_id in self._broadcasts:
            return
        task = asyncio.get_running_loop().create_task(self._broadcast(notification_id))
        self._broadcasts[notification_id] = task
        task.add_done_callback(lambda _task: self._broadcasts.pop(notification_id, None))

    async def _broadcast(self, notification_id: int) -> None:
        """Claim, push, then record: the sockets do not wait for 10,000 rows to be written.

        A thread of its own (and so a database connection of its own) keeps the main loop's
        database thread free for the one-user notifications. A crash between push and
        record leaves the notification unrecorded; the next sweep (any listener's) records
        it without pushing again.
        """
        assert self._broadcast_slot is not None and self._record_slot is not None  # noqa: S101
        began = time.perf_counter()
        async with self._broadcast_slot:
            if self.database_down:
                # Not claimed yet: the sweep that ends the outage (any listener's) dispatches
                # it. Claims queued behind this slot must not each wait on a dead database.
                return
            started = time.perf_counter()
            ok, claimed = await self._in_own_thread(claim_broadcast, notification_id, "Claiming")
            if not ok or claimed is None:
                return
            claimed_at = time.perf_counter()
            await self._push([claimed])
            pushed_at = time.perf_counter()
        async with self._record_slot:
            await self._record(notification_id, claimed)
        logger.info(
            "Broadcast %s: waited %.1f ms for its turn, claimed in %.1f ms, pushed in %.1f ms, "
            "recorded in %.1f ms",
            notification_id,
            (started - began) * 1000,
            (claimed_at - started) * 1000,
            (pushed_at - claimed_at) * 1000,
            (time.perf_counter() - pushed_at) * 1000,
        )
        self._log(claimed)
        await self._observe(claimed)
        if self.on_dispatched:
            self.on_dispatched(claimed)
        self.dispatched_total += 1

    async def _in_own_thread(
        self, func: Callable[[int], object], notification_id: int, doing: str
    ) -> tuple[bool, Any]:
        """Run a claim or a record on a pool thread (a database connection of its own, so the
        main loop's stays free); a failure is logged and left to the sweep."""
        try:
            call = db_async_discarding(func, thread_sensitive=False)
            return True, await call(notification_id)
        except django_db.Error as exc:
            if not database_unavailable(exc):
                logger.exception(
                    "%s notification %s failed; the sweep will retry it", doing, notification_id
                )
            else:
                self._database_failed(exc, f"{doing.lower()} notification {notification_id}")
            return False, None
        except Exception:
            logger.exception(
                "%s notification %s failed; the sweep will retry it", doing, notification_id
            )
            return False, None

    async def _record(self, notification_id: int, claimed: Dispatched | None = None) -> None:
        if self.database_down:
            return  # pushed, not recorded: the sweep after the outage records it
        started = time.perf_counter()
        ok, count = await self._in_own_thread(record_broadcast, notification_id, "Recording")
        if not ok:
            return
        if claimed is not None and count is not None:
            claimed.recipient_count = count
            claimed.elapsed_ms += (time.perf_counter() - started) * 1000
        elif count is not None:
            logger.info("Recorded notification %s for %d recipient(s)", notification_id, count)

    async def _await_broadcasts(self) -> None:
        """Let broadcasts in flight finish: a stop never leaves one half-pushed."""
        if self._broadcasts:
            await asyncio.gather(*list(self._broadcasts.values()), return_exceptions=True)

    async def _push(self, results: list[Dispatched]) -> None:
        """Fan out a batch, several pushes in flight at once (each is a few Redis trips)."""
        for start in range(0, len(results), PUSH_CONCURRENCY):
            chunk = results[start : start + PUSH_CONCURRENCY]
            outcomes = await asyncio.gather(
                *(
                    asyncio.wait_for(afan_out(result, self.layer), FAN_OUT_TIMEOUT)
                    for result in chunk
                ),
                return_exceptions=True,
            )
            for result, outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    # The rows are committed: the bell notices the gap and syncs.
                    logger.error("Pushing notification %s failed: %r", result.id, outcome)

    async def sweep(self) -> int:
        """Dispatch every due, undispatched notification; note when the next one is due.

        During a database outage this is the retry, too: it asks whether the database is
        back (a probe that cannot wait on a pool's back-off), then catches up on everything
        left undispatched meanwhile. A failed sweep never leaves a wake-up in the past (the
        loop would sweep again at once, in a tight loop): a database error plans the next
        attempt with back-off, any other error waits for the next regular sweep.
        """
        total = 0
        # Planned afresh at the end; a failure leaves no past wake-up behind.
        self._next_scheduled = None
        try:
            if self.database_down:
                self._db_attempts += 1
                self._db_last_attempt = time.monotonic()
                await db_async_discarding(probe_database)()
            while not self.stopping or self.once:
                ids = await db_async_discarding(due_notification_ids)(BATCH_SIZE)
                if ids:
                    logger.info("Sweep found %d undispatched notification(s)", len(ids))
                total += await self._dispatch_ids(ids)
                if len(ids) < BATCH_SIZE:
                    break
            await self._record_leftovers()
            await self._return_snoozed()
            await self._announce_expired()
            await self._plan_next_scheduled()
        except django_db.Error as exc:
            self._database_failed(exc, "sweeping")
            return total
        except Exception as exc:
            logger.exception("Sweep failed; retrying in %.0f s", self.settings.SWEEP_INTERVAL)
            if self.database_down:
                # The retry's time has passed: plan the next one, or the loop would spin.
                self._database_failed(exc, "sweeping")
            return total
        self._database_recovered(total)
        return total

    # ---- database outages ----------------------------------------------------------------

    @property
    def database_down(self) -> bool:
        """Whether the last database call failed and no sweep has succeeded since."""
        return self._db_down_since is not None

    def _database_failed(self, exc: BaseException, doing: str) -> None:
        """Pause database work after an error, and plan the next attempt with back-off.

        The attempt is the loop's next sweep (probe, then catch up), after a jittered delay
        that doubles from RECONNECT_MIN_DELAY to RECONNECT_MAX_DELAY, as for Redis: several
        listeners must not hammer a recovering server in step. One warning per outage; the
        attempts that fail after it are logged at debug level, so an outage of an hour is
        two lines in the log, not a traceback a second. The broken connections were closed
        by ``db_async_discarding`` in the thread that held them.
        """
        now = time.monotonic()
        settings = self.settings
        if self._db_down_since is None:
            self._db_down_since = self._db_last_attempt = now
            self._db_delay = settings.RECONNECT_MIN_DELAY
            self._db_attempts = 0
            logger.warning(
                "Database unavailable while %s (%s: %s); dispatch paused, retrying with back-off",
                doing,
                type(exc).__name__,
                _first_line(exc),
                # A lost connection needs no traceback; anything else (a missing table) does.
                exc_info=exc if not database_unavailable(exc) else None,
            )
        else:
            logger.debug("Database still unavailable while %s: %s", doing, _first_line(exc))
        if self._db_retry_at is None or self._db_retry_at <= now:
            delay = self._db_delay
            self._db_retry_at = now + delay / 2 + random.uniform(0, delay / 2)  # noqa: S311
            self._db_delay = min(delay * 2, settings.RECONNECT_MAX_DELAY)

    def _retry_database_soon(self) -> None:
        """Bring the next attempt forward: an announcement means that a commit went through.

        The database is then most likely back; waiting out the back-off (up to
        RECONNECT_MAX_DELAY) would only delay the catch-up. Attempts stay at least
        RECONNECT_MIN_DELAY apart, however many announcements arrive.
        """
        if self._db_retry_at is None:
            return
        earliest = max(time.monotonic(), self._db_last_attempt + self.settings.RECONNECT_MIN_DELAY)
        self._db_retry_at = min(self._db_retry_at, earliest)

    def _database_recovered(self, caught_up: int) -> None:
        """End an outage after a sweep went through: log it once, reset the back-off."""
        if self._db_down_since is None:
            return
        logger.warning(
            "Database back after %.1f s (%d attempt(s)); the sweep dispatched %d notification(s)",
            time.monotonic() - self._db_down_since,
            self._db_attempts,
            caught_up,
        )
        self._db_down_since = None
        self._db_retry_at = None
        self._db_delay = self.settings.RECONNECT_MIN_DELAY
        self._db_attempts = 0

    def _sweep_due(self, now: float, next_sweep: float) -> bool:
        """Whether the loop should sweep now: a regular sweep, a scheduled notification
        falling due, or (while the database is down) the next retry; nothing earlier."""
        if self._db_retry_at is not None:
            return now >= self._db_retry_at
        return now >= next_sweep or (
            self._next_scheduled is not None and now >= self._next_scheduled
        )

    def _next_wake(self, next_sweep: float) -> float:
        """Return when ``_sweep_due`` next becomes true (monotonic), for the wait's timeout."""
        if self._db_retry_at is not None:
            return self._db_retry_at
        if self._next_scheduled is None:
            return next_sweep
        return min(next_sweep, self._next_scheduled)

    async def _record_leftovers(self) -> None:
        """Record broadcasts that were pushed but never recorded (their listener died)."""
        ids = await db_async_discarding(unrecorded_notification_ids)(BATCH_SIZE)
        for notification_id in ids:
            if notification_id in self._broadcasts or (self.stopping and not self.once):
                continue
            logger.info("Sweep records notification %s, pushed but not recorded", notification_id)
            # Beside the main loop, like a broadcast: recording 100,000 rows takes a second.
            task = asyncio.get_running_loop().create_task(self._record_leftover(notification_id))
            self._broadcasts[notification_id] = task
            task.add_done_callback(
                lambda _task, key=notification_id: self._broadcasts.pop(key, None)
            )

    async def _record_leftover(self, notification_id: int) -> None:
        async with self._record_slot or contextlib.nullcontext():
            await self._record(notification_id)

    async def _return_snoozed(self) -> None:
        """Push the snoozes that have come due to their users, as new notifications."""
        while True:
            returned = await db_async_discarding(deliveries_return_snoozed)(None, BATCH_SIZE)
            if not returned:
                return
            try:
                await asyncio.wait_for(apush_returned(returned, self.layer), FAN_OUT_TIMEOUT)
            except Exception as exc:
                # The rows are back (unread, counted): the bell's next pong shows them.
                logger.error("Pushing %d returned snooze(s) failed: %r", len(returned), exc)
            by_user: dict[str, list[int]] = {}
            for item in returned:
                by_user.setdefault(str(item.user_id), []).append(item.notification.pk)
            for user, ids in by_user.items():
                await aemit("returned", user=user, ids=ids)
            logger.info(
                "Brought back %d snoozed notification(s) for %d user(s)",
                len(returned),
                len(by_user),
            )
            if len(returned) < BATCH_SIZE:
                return

    async def _announce_expired(self) -> None:
        """Say which notifications expired since the last look (for watch_notifications)."""
        now = timezone.now()
        ids = await db_async_discarding(expired_between)(self._expiry_seen_until, now)
        self._expiry_seen_until = now
        if not ids:
            return
        # Every open bell drops them now, not at its next reload.
        by_group = await db_async_discarding(expired_by_group)(ids)
        try:
            await apush_expired(by_group, self.layer)
        except Exception as exc:
            logger.warning(
                "Could not push %d expiries (%r); bells drop them at reload", len(ids), exc
            )
        for notification_id in ids:
            await aemit("expired", id=notification_id)

    async def _plan_next_scheduled(self) -> None:
        """Plan the next wake-up: a scheduled notification, a snooze's end, an expiry."""
        when = await db_async_discarding(_next_wake_at)(self._expiry_seen_until)
        self._next_scheduled = None
        if when is not None:
            self._plan_at(when)

    def _plan_at(self, when: datetime) -> None:
        """Wake up at ``when`` (a notification's publish_at), unless something is due sooner."""
        at = time.monotonic() + max(0.0, (when - timezone.now()).total_seconds())
        if self._next_scheduled is None or at < self._next_scheduled:
            self._next_scheduled = at

    async def _observe(self, result: Dispatched) -> None:
        """Tell watch_notifications (when one runs: otherwise this costs nothing)."""
        if not result.expired:
            await aemit(
                "dispatched",
                id=result.id,
                audience=result.audience,
                recipients=result.recipient_count,
            )

    def _log(self, result: Dispatched) -> None:
        if result.expired:
            logger.info("Notification %s had expired before dispatch; nothing pushed", result.id)
            return
        logger.info(
            "Dispatched notification %s (%s) %r to %d recipient(s) via %s in %.1f ms",
            result.id,
            result.audience,
            result.notification["title"][:60],
            result.recipient_count,
            ", ".join(result.groups),
            result.elapsed_ms,
        )


def _claim_batch(ids: list[int]) -> tuple[list[Dispatched], list[int], dict[int, datetime]]:
    """Dispatch the one-user notifications among ``ids``; return them, the other ids, and
    which of those are scheduled for later (with their ``publish_at``).

    One trip to the database thread. The scheduled ones are found only among the ids the
    batch did not dispatch (usually none), by primary key: the announcement of a scheduled
    notification then plans the listener's wake-up for exactly its time.
    """
    results, others = dispatch_one_user_batch(ids)
    scheduled: dict[int, datetime] = {}
    if others:
        scheduled = dict(
            Notification.objects.undispatched()
            .filter(pk__in=others, publish_at__gt=timezone.now())
            .values_list("pk", "publish_at")
        )
    return results, others, scheduled


def _next_wake_at(expiry_seen_until: datetime) -> datetime | None:
    """The first of: a scheduled notification due, a snooze ending, an expiry (one trip)."""
    moments = [next_scheduled_at(), next_snooze_due_at(), next_expiry_after(expiry_seen_until)]
    return min((moment for moment in moments if moment is not None), default=None)


def _first_line(exc: BaseException) -> str:
    """Return the first line of an error's message (libpq's run to several), for one log line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Kept for callers of the old name; redis_clients says where Redis is without a password.
_redacted = redis_clients.redacted_url
