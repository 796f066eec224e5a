"""Acks and seen marks from a daphne process's sockets, written together (group commit).

A broadcast reaches 5,000 browsers within a few hundred milliseconds, and each answers with
an ack, then (its toast shown) a seen mark. Written one frame at a time that was 10,000
transactions, on SQLite each under the one write lock, queued in daphne's thread pool
beside the pushes still going out. Here the marks of every socket of the process that
arrive within a short window are written together, in a few statements (up to 100
notifications each, each committed on its own: services._marks_statements): the database
does per window what it used to do per browser and per push.

Neither an ack nor a seen mark holds its socket up: the socket's next frame (a read, a
sync) is handled at once. Order cannot suffer: an ack only moves a *pending* row to
delivered, so one written after a read of the same row changes nothing. What an ack batch
changed is told to ``watch_notifications`` when it commits (``on_delivered``); a batch that
fails is logged, and those rows stay pending: the next sync or ack writes them again (a sync
records what is in flight). A seen mark only feeds stats: one lost with a process that stops
within its window is not worth a flush on the way down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from notifications.events import UserId
from notifications.services import (
    adeliveries_mark_delivered_many,
    adeliveries_mark_seen_many,
)

logger = logging.getLogger(__name__)

# Acks are gathered this long before their batch is written: nobody waits for them, and
# under bell traffic (an ack per push per browser) a 5 ms window wrote a transaction per
# push, each taking SQLite's one write lock the listener's dispatch needs too.
ACK_WINDOW = 0.05
# Seen marks wait longer: nothing waits for them.
SEEN_WINDOW = 1.0

Marks = dict[int, set[UserId]]


class BatchedMarks:
    """Collects {notification id: users} and writes each window's batch with ``write``."""

    def __init__(self, write: Callable[[Marks], Awaitable[int]], window: float) -> None:
        self.write = write
        self.window = window
        self.pending: Marks = {}
        self.batch: asyncio.Future[int] | None = None
        self._writing: set[asyncio.Task[None]] = set()  # held: the loop keeps weak refs

    def add(self, user_id: UserId, ids: Iterable[int]) -> asyncio.Future[int]:
        """Add marks; return the future of their batch (how many rows it changed)."""
        for notification_id in ids:
            self.pending.setdefault(notification_id, set()).add(user_id)
        if self.batch is None:
            loop = asyncio.get_running_loop()
            self.batch = loop.create_future()
            loop.call_later(self.window, self._flush)
        return self.batch

    def _flush(self) -> None:
        marks, batch = self.pending, self.batch
        self.pending, self.batch = {}, None
        if batch is not None:
            task = asyncio.get_running_loop().create_task(self._write(marks, batch))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _write(self, marks: Marks, batch: asyncio.Future[int]) -> None:
        try:
            changed = await self.write(marks) if marks else 0
        except Exception as exc:
            batch.set_exception(exc)
            batch.add_done_callback(_retrieve)  # nobody may be awaiting (seen marks)
        else:
            batch.set_result(changed)


def _retrieve(batch: asyncio.Future[int]) -> None:
    exc = batch.exception()
    if exc is not None:
        logger.debug("A batch of marks was not written: %r", exc)


class ProcessMarks:
    """This event loop's two batchers: acks and seen marks; nobody waits for either."""

    def __init__(self) -> None:
        self.acks = BatchedMarks(adeliveries_mark_delivered_many, ACK_WINDOW)
        self.seen = BatchedMarks(adeliveries_mark_seen_many, SEEN_WINDOW)

    def mark_seen(self, user_id: UserId, ids: Iterable[int]) -> None:
        batch = self.seen.add(user_id, ids)
        batch.add_done_callback(_log_failure("seen marks"))

    def mark_delivered(
        self,
        user_id: UserId,
        ids: Iterable[int],
        on_delivered: Callable[[], Awaitable[None]] | None = None,
    ) -> asyncio.Future[int]:
        """Queue acks; return their batch's future (rows it changed, others' included).

        ``on_delivered`` runs once the batch has committed and changed a row.
        """
        batch = self.acks.add(user_id, ids)
        batch.add_done_callback(_log_failure("acks"))
        if on_delivered is not None:
            batch.add_done_callback(_then(on_delivered))
        return batch


def _log_failure(what: str) -> Callable[[asyncio.Future[int]], None]:
    def log(batch: asyncio.Future[int]) -> None:
        if not batch.cancelled() and batch.exception() is not None:
            logger.warning("Could not record a batch of %s: %r", what, batch.exception())

    return log


def _then(
    follow: Callable[[], Awaitable[None]],
) -> Callable[[asyncio.Future[int]], None]:
    """A done-callback that runs ``follow()`` as a task if the batch changed rows."""

    def done(batch: asyncio.Future[int]) -> None:
        if batch.cancelled() or batch.exception() is not None or not batch.result():
            return
        task = asyncio.get_running_loop().create_task(_logged(follow))
        _following.add(task)
        task.add_done_callback(_following.discard)

    return done


async def _logged(follow: Callable[[], Awaitable[None]]) -> None:
    try:
        await follow()
    except Exception:
        logger.exception("Telling the watchers of a batch of acks failed")


_following: set[asyncio.Task[None]] = set()  # held: the loop keeps weak refs to tasks


_marks: dict[asyncio.AbstractEventLoop, ProcessMarks] = {}


def process_marks() -> ProcessMarks:
    """Return this event loop's batchers (one per daphne process, one per test loop)."""
    loop = asyncio.get_running_loop()
    marks = _marks.get(loop)
    if marks is None:
        marks = _marks[loop] = ProcessMarks()
    return marks
