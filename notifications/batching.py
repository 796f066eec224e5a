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
changed is told to ``watch_notifications`` when it commits, one event per user; a batch that
fails is logged, and those rows stay pending: the next sync or ack writes them again (a sync
records what is in flight). A seen mark only feeds stats: one lost with a process that stops
within its window is not worth a flush on the way down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from notifications.events import UserId
from notifications.observe import aemit
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
    """Collects {notification id: users} and writes each window's batch with ``write``.

    ``after`` runs once a batch has committed and changed rows (with the batch's marks); a
    failed batch is logged once, whoever added to it.
    """

    def __init__(
        self,
        write: Callable[[Marks], Awaitable[int]],
        window: float,
        what: str = "marks",
        after: Callable[[Marks], Awaitable[None]] | None = None,
    ) -> None:
        self.write = write
        self.window = window
        self.what = what
        self.after = after
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
            logger.warning("Could not record a batch of %s: %r", self.what, exc)
            batch.set_exception(exc)
            batch.add_done_callback(_retrieve)  # nobody may be awaiting (seen marks)
            return
        batch.set_result(changed)
        if changed and self.after is not None:
            try:
                await self.after(marks)
            except Exception:
                logger.exception("After a batch of %s", self.what)


def _retrieve(batch: asyncio.Future[int]) -> None:
    batch.exception()


async def tell_watchers_delivered(marks: Marks) -> None:
    """One ``delivered`` watch event per user of a committed ack batch, in one task.

    One task per batch, not one per ack: after a broadcast, 5,000 tasks each asked Redis at
    once whether anyone watches, each on a connection of its own. One after the other, the
    first answer ("nobody") lets the rest skip at the cost of a clock read (observe.py).
    """
    by_user: dict[UserId, list[int]] = {}
    for notification_id, users in marks.items():
        for user_id in users:
            by_user.setdefault(user_id, []).append(notification_id)
    for user_id, ids in by_user.items():
        await aemit("delivered", user=str(user_id), ids=sorted(ids))


class ProcessMarks:
    """This event loop's two batchers: acks and seen marks; nobody waits for either."""

    def __init__(self) -> None:
        self.acks = BatchedMarks(
            adeliveries_mark_delivered_many, ACK_WINDOW, "acks", after=tell_watchers_delivered
        )
        self.seen = BatchedMarks(adeliveries_mark_seen_many, SEEN_WINDOW, "seen marks")

    def mark_seen(self, user_id: UserId, ids: Iterable[int]) -> asyncio.Future[int]:
        """Queue seen marks; return their batch's future (rows it changed, others' included)."""
        return self.seen.add(user_id, ids)

    def mark_delivered(self, user_id: UserId, ids: Iterable[int]) -> asyncio.Future[int]:
        """Queue acks; return their batch's future (rows it changed, others' included).

        Once the batch has committed and changed rows, ``watch_notifications`` hears one
        ``delivered`` per user of the batch.
        """
        return self.acks.add(user_id, ids)


_marks: dict[asyncio.AbstractEventLoop, ProcessMarks] = {}


def process_marks() -> ProcessMarks:
    """Return this event loop's batchers (one per daphne process, one per test loop)."""
    loop = asyncio.get_running_loop()
    marks = _marks.get(loop)
    if marks is None:
        marks = _marks[loop] = ProcessMarks()
    return marks
