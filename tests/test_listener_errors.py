"""The listener against database errors: back-off, no tight loop, catch-up, exact schedules.

The database is made to fail by patching the functions the listener calls to raise the
``OperationalError`` a lost PostgreSQL connection raises; everything else is real (Redis,
the listener's loop, the database once it is "back"). The real outage, a PostgreSQL
cluster stopped hard under load, is tests/faults/test_database_down.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, OperationalError
from django.test import override_settings
from django.utils import timezone

from notifications import asyncdb, conf, dispatch
from notifications import listener as listener_module
from notifications.listener import NotificationListener
from notifications.models import Delivery, Notification
from notifications.services import notify
from tests.factories import UserFactory

LOST_CONNECTION = "server closed the connection unexpectedly\n\tThis probably means the server..."


class Outage:
    """While ``down``, every database call of the listener raises OperationalError."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.failures = 0
        self.probes = 0  # retry attempts: each starts with a probe
        for name in ("due_notification_ids", "dispatch_one_user_batch", "next_scheduled_at"):
            monkeypatch.setattr(listener_module, name, self._guard(getattr(listener_module, name)))
        monkeypatch.setattr(
            listener_module, "probe_database", self._guard(asyncdb.probe_database, probe=True)
        )

    def _guard(self, real: Callable[..., Any], probe: bool = False) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if probe:
                self.probes += 1
            if self.down:
                self.failures += 1
                raise OperationalError(LOST_CONNECTION)
            return real(*args, **kwargs)

        return call


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Outage:
    return Outage(monkeypatch)


@pytest.fixture
def listener_log() -> Iterator[list[logging.LogRecord]]:
    """Every record the listener logs (the project's logger does not propagate to caplog)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("notifications.listener")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll an async or plain predicate; return the seconds it took, fail after ``timeout``."""
    started = time.monotonic()
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(instance: NotificationListener) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``instance`` in this loop until the block ends; its task fails the test if it died."""
    task = asyncio.create_task(instance.run())
    try:
        await wait_for(
            lambda: (
                task.done() or (instance.subscribed is not None and instance.subscribed.is_set())
            ),
            10,
            "the listener subscribing",
        )
        if task.done():
            task.result()
        yield task
    finally:
        instance.stop()
        if not task.done():
            await asyncio.wait_for(task, 10)
        elif not task.cancelled() and task.exception() is not None:
            raise task.exception()


def dispatched(notification: Notification) -> Callable[[], Any]:
    return sync_to_async(lambda: Delivery.objects.filter(notification_id=notification.pk).exists())


# ---- the loop through an outage ------------------------------------------------------------


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_an_outage_pauses_dispatch_backs_off_and_catches_up(
    outage: Outage, listener_log: list[logging.LogRecord]
) -> None:
    user = await sync_to_async(UserFactory)()
    instance = NotificationListener(handle_signals=False)
    async with running(instance) as task:
        outage.down = True
        # The next regular sweep (SWEEP_INTERVAL is 1 s in the tests) meets the outage.
        await wait_for(lambda: instance.database_down, 10, "the listener noticing the outage")
        # Saved (the real database answers the test) and announced while the listener thinks
        # it is down: left for the sweep that ends the outage.
        during = await sync_to_async(notify)(user, "during the outage")
        probes, window = outage.probes, 3.0
        await asyncio.sleep(window)
        attempts = outage.probes - probes
        print(f"\n{attempts} retries in {window:g} s of outage ({attempts / window:.1f}/s)")
        assert not task.done()
        assert attempts >= 2, "the listener stopped retrying"
        assert attempts <= 4 * window, f"a tight loop: {attempts} retries in {window:g} s"
        assert not await dispatched(during)()

        outage.down = False
        back = await wait_for(dispatched(during), 5, "the catch-up after the outage")
        print(f"caught up {back:.2f} s after the database came back")
        await wait_for(lambda: not instance.database_down, 5, "the end of the outage")
        after = await sync_to_async(notify)(user, "after the outage")
        await wait_for(dispatched(after), 5, "a new notification after the outage")
        assert not task.done()

    loud = [r for r in listener_log if r.levelno >= logging.WARNING]
    down_lines = [r for r in loud if "Database unavailable" in r.getMessage()]
    assert len(down_lines) == 1, [r.getMessage() for r in loud]
    assert any("Database back after" in r.getMessage() for r in loud)
    assert not [r for r in loud if r.exc_info], "an outage logged a traceback"
    assert not [r for r in loud if r.levelno >= logging.ERROR], [r.getMessage() for r in loud]


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_stop_during_an_outage_returns_promptly(outage: Outage) -> None:
    instance = NotificationListener(handle_signals=False)
    async with running(instance) as task:
        outage.down = True
        await wait_for(lambda: instance.database_down, 10, "the listener noticing the outage")
        asked = time.monotonic()
        instance.stop()
        await asyncio.wait_for(asyncio.shield(task), 5)
        assert time.monotonic() - asked < 3


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_cancellation_during_an_outage_is_not_swallowed(outage: Outage) -> None:
    instance = NotificationListener(handle_signals=False)
    async with running(instance) as task:
        outage.down = True
        await wait_for(lambda: instance.database_down, 10, "the listener noticing the outage")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_an_unexpected_error_in_a_batch_does_not_end_the_loop(
    monkeypatch: pytest.MonkeyPatch, listener_log: list[logging.LogRecord]
) -> None:
    real = listener_module.dispatch_one_user_batch
    calls = {"n": 0}

    def fails_once(ids: list[int]) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in one batch")
        return real(ids)

    user = await sync_to_async(UserFactory)()
    instance = NotificationListener(handle_signals=False)
    async with running(instance) as task:
        monkeypatch.setattr(listener_module, "dispatch_one_user_batch", fails_once)
        first = await sync_to_async(notify)(user, "meets the bug")
        await wait_for(dispatched(first), 10, "the notification whose batch failed")
        second = await sync_to_async(notify)(user, "after the bug")
        await wait_for(dispatched(second), 10, "the next notification")
        assert not task.done()
    # Logged with its traceback, by the sweep or by the session's safety net (whichever
    # handled the batch first), and then the loop went on.
    assert any(r.exc_info and "a bug in one batch" in str(r.exc_info[1]) for r in listener_log)


# ---- the sweep's timers --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_failing_sweep_leaves_no_wake_up_in_the_past(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scheduled time passed and the sweep fails: the loop must not sweep again at once."""
    instance = NotificationListener(handle_signals=False)
    instance._stop = asyncio.Event()

    def bug(limit: int) -> list[int]:
        raise RuntimeError("not the database")

    monkeypatch.setattr(listener_module, "due_notification_ids", bug)
    instance._next_scheduled = time.monotonic() - 5
    await instance.sweep()
    now = time.monotonic()
    assert not instance._sweep_due(now, next_sweep=now + 1)
    assert not instance.database_down

    def lost(limit: int) -> list[int]:
        raise OperationalError(LOST_CONNECTION)

    monkeypatch.setattr(listener_module, "due_notification_ids", lost)
    instance._next_scheduled = time.monotonic() - 5
    await instance.sweep()
    now = time.monotonic()
    assert instance.database_down
    # Not even an overdue regular sweep: the back-off comes first.
    assert not instance._sweep_due(now, next_sweep=now - 1)
    minimum = conf.get().RECONNECT_MIN_DELAY
    assert minimum / 2 - 0.05 <= instance._next_wake(now + 60) - now <= minimum


def test_the_back_off_doubles_with_jitter_up_to_the_ceiling() -> None:
    settings_ = conf.get()
    instance = NotificationListener(handle_signals=False)
    delay = settings_.RECONNECT_MIN_DELAY
    for _ in range(8):
        instance._db_retry_at = 0.0  # the last attempt's time has come (and it failed)
        now = time.monotonic()
        instance._database_failed(OperationalError(LOST_CONNECTION), "testing")
        wait = instance._db_retry_at - now
        assert delay / 2 - 0.01 <= wait <= delay + 0.01
        delay = min(delay * 2, settings_.RECONNECT_MAX_DELAY)
    # A failure before the planned attempt (another task's) does not push it further away.
    planned = instance._db_retry_at
    instance._database_failed(OperationalError(LOST_CONNECTION), "testing")
    assert instance._db_retry_at == planned


def test_an_announcement_during_an_outage_brings_the_retry_forward() -> None:
    instance = NotificationListener(handle_signals=False)
    instance._database_failed(OperationalError(LOST_CONNECTION), "testing")
    instance._db_retry_at = time.monotonic() + 60
    instance._db_last_attempt = time.monotonic()
    instance._retry_database_soon()
    wait = instance._db_retry_at - time.monotonic()
    # Soon, but never sooner than RECONNECT_MIN_DELAY after the last attempt.
    assert 0 < wait <= conf.get().RECONNECT_MIN_DELAY + 0.01


# ---- scheduled notifications ---------------------------------------------------------------


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_a_notification_scheduled_after_the_last_sweep_is_dispatched_on_time() -> None:
    """With sweeps a minute apart, only the announcement's planning can be this punctual."""
    user = await sync_to_async(UserFactory)()
    with override_settings(NOTIFICATIONS={**settings.NOTIFICATIONS, "SWEEP_INTERVAL": 60.0}):
        instance = NotificationListener(handle_signals=False)
        async with running(instance):
            await asyncio.sleep(0.3)  # its first sweep is behind it; the next is a minute off
            publish_at = timezone.now() + timedelta(seconds=2)
            scheduled = await sync_to_async(Notification.objects.create)(
                title="on time", recipient=user, audience="user", publish_at=publish_at
            )
            await wait_for(dispatched(scheduled), 8, "the scheduled notification")
    await sync_to_async(scheduled.refresh_from_db)()
    late = (scheduled.dispatched_at - publish_at).total_seconds()
    print(f"\nscheduled notification dispatched {late * 1000:.0f} ms after its publish_at")
    assert 0 <= late < 1.0


# ---- dispatch's error paths ----------------------------------------------------------------


def test_an_unavailable_database_is_not_retried_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[int]] = []

    def lost(ids: list[int], now: Any) -> list[Any]:
        calls.append(list(ids))
        raise OperationalError(LOST_CONNECTION)

    monkeypatch.setattr(dispatch, "_dispatch_single_user_batch", lost)
    with pytest.raises(OperationalError):
        dispatch.dispatch_one_user_batch([1, 2, 3])
    assert calls == [[1, 2, 3]]  # no second query inside the except


def test_dispatch_many_stops_at_an_unavailable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def lost(notification_id: int) -> None:
        calls.append(notification_id)
        raise OperationalError(LOST_CONNECTION)

    monkeypatch.setattr(dispatch, "dispatch_notification", lost)
    with pytest.raises(OperationalError):
        dispatch.dispatch_many([1, 2, 3])
    assert calls == [1]


@pytest.mark.django_db
def test_a_batch_that_fails_for_one_row_is_retried_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = UserFactory()
    rows = Notification.objects.bulk_create(
        [Notification(title=f"row {i}", recipient=user, audience="user") for i in range(3)]
    )
    real = dispatch._dispatch_single_user_batch

    def fails_together(ids: list[int], now: Any) -> list[Any]:
        if len(ids) > 1:
            raise IntegrityError("one bad row")
        return real(ids, now)

    monkeypatch.setattr(dispatch, "_dispatch_single_user_batch", fails_together)
    results, others = dispatch.dispatch_one_user_batch([row.pk for row in rows])
    assert sorted(result.id for result in results) == sorted(row.pk for row in rows)
    assert others == []
    assert Delivery.objects.filter(user=user).count() == 3


@pytest.mark.django_db
def test_the_probe_answers_when_the_database_does() -> None:
    asyncdb.probe_database()
    assert asyncdb.database_unavailable(OperationalError("x"))
    assert not asyncdb.database_unavailable(IntegrityError("x"))


# ---- daphne's side: the process-wide breaker -----------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_breaker_fails_fast_while_down_and_closes_on_a_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After one unavailable error, calls fail at once (no query) until a probe answers."""
    calls = {"n": 0}
    down = {"yes": True}

    def query() -> str:
        calls["n"] += 1
        if down["yes"]:
            raise OperationalError(LOST_CONNECTION)
        return "answered"

    aquery = asyncdb.db_async(query)
    try:
        with pytest.raises(OperationalError):
            await aquery()
        assert asyncdb.breaker.open
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(asyncdb.DatabaseUnavailable):
                await aquery()
        assert calls["n"] == 1, "calls went to the database while the breaker was open"
        assert time.monotonic() - started < 1.0, "failing fast took too long"
        down["yes"] = False
        # The next probe (within RECONNECT_MIN_DELAY) finds the database and lets calls through.
        deadline = time.monotonic() + 5
        while True:
            try:
                assert await aquery() == "answered"
                break
            except asyncdb.DatabaseUnavailable:
                assert time.monotonic() < deadline, "the breaker never closed"
                await asyncio.sleep(0.05)
        assert not asyncdb.breaker.open
    finally:
        asyncdb.breaker.reset()
