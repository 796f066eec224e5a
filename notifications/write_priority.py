"""A process's background writes (acks, seen marks) give way to the verbs a user waits for.

daphne writes both from its thread pool: batches of acks and seen marks, which nobody waits
for, and a user's read, Done, snooze or mark-unread, whose answer every tab of the user is
waiting for. On SQLite there is one write lock, and a writer that finds it taken polls with
growing sleeps (1, 2, 5 … 100 ms); a batch is many short statements, each of which takes the
lock again at once, so a verb that arrived during a broadcast's 2,000 acks slept through
every gap between them (T1's tail: p99 96 ms, 13 ms without the acks). Here a marks batch
waits, before each of its statements, while a verb of the same process is writing, and a
verb waits for one statement at most. On PostgreSQL it orders row-lock waits the same way.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

# The longest a background statement waits for the verbs in flight: a steady stream of them
# must not starve the marks (an ack not written is a row still "pending" in the stats).
MAX_GIVE_WAY_SECONDS = 0.25

_condition = threading.Condition()
_writing = 0  # verbs between their first and last statement, in this process


@contextlib.contextmanager
def foreground() -> Iterator[None]:
    """Mark a write someone waits for (a verb; also a decorator): background batches hold off."""
    global _writing
    with _condition:
        _writing += 1
    try:
        yield
    finally:
        with _condition:
            _writing -= 1
            if not _writing:
                _condition.notify_all()


def writing() -> int:
    """How many foreground writes are in flight in this process."""
    return _writing


def give_way(timeout: float = MAX_GIVE_WAY_SECONDS) -> bool:
    """Before a background statement: wait while foreground writes are in flight.

    Returns whether it had to wait. A plain read of the counter first: the common case (no
    verb in flight) takes no lock.
    """
    if not _writing:
        return False
    with _condition:
        _condition.wait_for(lambda: not _writing, timeout=timeout)
    return True
