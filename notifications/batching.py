"""Acks and seen marks from a daphne process's sockets, written together (group commit).

A broadcast reaches 5,000 browsers within a few hundred milliseconds, and each answers with
an ack, then (its toast shown) a seen mark. Written one frame at a time that was 10,000
transactions, on SQLite each under the one write lock, queued in daphne's thread pool
beside the pushes still going out. Here the marks of every socket of the process that
arrive within a short window are written in one transaction, one statement per
notification: the database does per broadcast what it used to do per browser.

An ack waits for its batch to commit (a socket's frames keep their order, and a failed
write still answers that socket with an error); a seen mark does not (it only feeds stats):
one lost with a process that stops within its window is not worth a flush on the way down.
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

# An ack waits at most this long for others to join its batch: far below what a person
# notices, and under load many acks of one broadcast fall into each window.
ACK_WINDOW = 0.005
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
    """This event loop's two batchers: acks (awaited) and seen marks (not)."""

    def __init__(self) -> None:
        self.acks = BatchedMarks(adeliveries_mark_delivered_many, ACK_WINDOW)
        self.seen = BatchedMarks(adeliveries_mark_seen_many, SEEN_WINDOW)

    def mark_seen(self, user_id: UserId, ids: Iterable[int]) -> None:
        batch = self.seen.add(user_id, ids)
        batch.add_done_callback(_log_seen_failure)

    async def mark_delivered(self, user_id: UserId, ids: Iterable[int]) -> int:
        """Return how many rows the batch changed (others' included), once committed."""
        return await asyncio.shield(self.acks.add(user_id, ids))


def _log_seen_failure(batch: asyncio.Future[int]) -> None:
    if not batch.cancelled() and batch.exception() is not None:
        logger.warning("Could not record a batch of seen marks: %r", batch.exception())


_marks: dict[asyncio.AbstractEventLoop, ProcessMarks] = {}


def process_marks() -> ProcessMarks:
    """Return this event loop's batchers (one per daphne process, one per test loop)."""
    loop = asyncio.get_running_loop()
    marks = _marks.get(loop)
    if marks is None:
        marks = _marks[loop] = ProcessMarks()
    return marks
