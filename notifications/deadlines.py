"""Every deadline on a call to the channel layer (Redis) outside the listener, with its reason.

The channel layer runs without a socket read timeout (``setup.channel_layers``: idle sockets
block on BZPOPMIN for as long as the layer asks), so a Redis that stops answering — SIGSTOP,
a half-open TCP connection, a failover in progress — would hang whatever awaits it. Each
call made on a request, a handshake or an admin action therefore runs under one of these
deadlines, and what it protects degrades instead of waiting:

* a push from a request (mark read, logout, a user's or a group's save, the admin's resend)
  is dropped: the database already holds the change, and open tabs catch up at their next
  pong (``BELL_PING_INTERVAL``) or, for a membership change, rejoin at their next ping;
* a handshake sends ``hello`` from the database without waiting for its group joins, which
  the process's hub keeps retrying until Redis answers again (``fanout.LocalHub``).

The listener has deadlines of its own (``HEALTH_CHECK_*``, ``PUBLISH_TIMEOUT`` in conf.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asgiref.sync import async_to_sync

# One push from a request path (a group_send: three round trips to Redis). A healthy Redis
# answers in about a millisecond, a loaded 2-core box within tens; the slowest request path
# pays it twice (the admin's user form: the save's push and the groups' push), and the
# issue's bound for any request with Redis stopped is 2 s.
PUSH_SECONDS = 0.5
# One batch of a multi-user push (the admin's resend, a group's members): the batch's pushes
# run concurrently, so it costs about one push; a stalled batch ends the whole send.
PUSH_BATCH_SECONDS = 1.0
# Pushes in flight at once in a multi-user send: enough to hide Redis round trips, few
# enough to leave the layer's connection pool to the live sockets.
PUSH_CONCURRENCY = 50
# One write of queued group memberships (one pipeline per shard, however many handshakes
# queued theirs) or one batch of the hub's refresh. Thousands of ZADDs take milliseconds.
HUB_WRITE_SECONDS = 2.0
# The longest a handshake waits for its group joins before it sends hello anyway. Its joins
# may wait behind another socket's write in flight (up to HUB_WRITE_SECONDS) before their
# own: 2.5 s keeps hello within the 5 s with the session, user and badge reads of
# the handshake on a loaded machine. Joins not written by then are retried by the hub.
HANDSHAKE_JOIN_SECONDS = 2.5
# The hub's receive waits for a message as long as none comes (channels-redis repeats its
# 5 s BZPOPMIN), so a receive on a dead, half-open connection would wait forever: it is
# restarted on a fresh connection after this long without a message (loss-free, see
# fanout.LocalHub._receive_loop). Rare enough to cost nothing on an idle process.
HUB_RECEIVE_SECONDS = 15.0


async def group_send_all(
    layer: Any,
    messages: Sequence[tuple[str, dict[str, Any]]],
    *,
    batch_seconds: float = PUSH_BATCH_SECONDS,
    concurrency: int = PUSH_CONCURRENCY,
) -> None:
    """Send ``(group, event)`` pairs in concurrent batches, each batch under a deadline.

    Raises the first error (``TimeoutError`` for a Redis that stopped answering): the rest
    is not sent, since a Redis that failed one batch would make each further one wait too.
    """
    for start in range(0, len(messages), concurrency):
        batch = messages[start : start + concurrency]
        try:
            # A TaskGroup, not gather: a failure or the deadline cancels the batch's other
            # sends, so none is left waiting on a silent Redis after we return.
            async with asyncio.timeout(batch_seconds), asyncio.TaskGroup() as tasks:
                for group, event in batch:
                    tasks.create_task(layer.group_send(group, event))
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None


def push_from_sync(push: Callable[..., Awaitable[Any]], *args: Any, seconds: float) -> None:
    """Run an async push from synchronous code, wherever that code runs.

    ``async_to_sync`` refuses to run in a thread whose event loop is running (a notebook,
    a test driving a browser, sync code called from a coroutine without ``sync_to_async``):
    there the push runs in a thread of its own, and this waits at most ``seconds`` for it.
    Raises what the push raised (``TimeoutError`` for a silent Redis).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(push)(*args)
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            async_to_sync(push)(*args)
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    worker = threading.Thread(target=run, name="notifications-push", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"the push took over {seconds:g} s")
    if failure:
        raise failure[0]
