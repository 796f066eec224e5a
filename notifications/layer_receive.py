"""Take every message waiting on the hub's channel in one round trip, not one each.

channels-redis hands over one message per ``receive()``, at four Redis round trips each
(its backup-queue script, BZPOPMIN, ZADD to the backup, ZPOPMIN from it), each one a turn of
daphne's event loop. When that loop is busy with a thousand sockets, those turns are what
a message waits for: a burst to one user (a thread of comments) held every other user's
pushes up by half a second. The hub still waits for the first message with the layer's own
``receive()`` (it keeps a message popped by a cancelled wait); once one came, it takes the
others queued behind it here, up to a batch at a time.

What is taken is kept in a backup key of its own until the batch has been handed over (the
next drain deletes it): a drain whose answer was lost (Redis failed mid-call) is put back in
the queue by ``put_back()``, so nothing is lost. Each drain writes a new key, so putting
back never finds the batch before it, which was handed over already: a socket is not sent
one message twice because Redis failed between two drains (a Sentinel failover test caught
that). A put-back that fails itself is tried again before the next drain.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# Messages taken per drain: enough that a burst costs a few round trips, few enough that
# one batch's fan-out does not keep the event loop from the sockets for long.
DRAIN_LIMIT = 100
# How long an abandoned backup (a daphne process killed mid-batch) outlives it in Redis.
BACKUP_SECONDS = 60

# KEYS[1]: the process's queue; KEYS[2]: the backup of the batch handed over last (this call
# says it was: forget it); KEYS[3]: the backup of the batch taken now.
DRAIN_SCRIPT = """
redis.call('DEL', KEYS[2])
local items = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
for i = 1, #items, 2 do
    redis.call('ZADD', KEYS[3], items[i + 1], items[i])
end
if #items > 0 then
    redis.call('EXPIRE', KEYS[3], ARGV[2])
end
return items
"""

# Put the batch of a drain whose answer was lost (KEYS[2]: empty if the drain never ran) back
# at the front of the queue, scores kept, as channels-redis's own clean-up does for its
# backup; forget the batch before it (KEYS[3]), which was handed over.
PUT_BACK_SCRIPT = """
local items = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #items, 2 do
    redis.call('ZADD', KEYS[1], items[i + 1], items[i])
end
redis.call('DEL', KEYS[2], KEYS[3])
return #items / 2
"""


def supports_drain(layer: Any) -> bool:
    """Whether ``layer`` is a channels-redis core layer whose queue this module can read."""
    return all(
        hasattr(layer, name)
        for name in (
            "prefix",
            "non_local_name",
            "consistent_hash",
            "connection",
            "deserialize",
            "receive_buffer",
        )
    )


def _keys(layer: Any, channel: str) -> tuple[int, str]:
    real_channel = layer.non_local_name(channel)
    return layer.consistent_hash(real_channel), layer.prefix + real_channel


class QueueDrain:
    """Batches taken from one channel's queue, each kept in a backup key until the next.

    Used by one task at a time (the hub's receive loop): ``take()`` and ``put_back()`` are
    never in flight together.
    """

    def __init__(self, layer: Any, channel: str) -> None:
        self.layer = layer
        self.channel = channel
        self.index, self.queue = _keys(layer, channel)
        self._taken = 0  # drains started; the backup of drain n is "<queue>$drained:<n>"
        self._unsettled = False  # a drain failed and its put-back has not succeeded yet

    def _backup(self, number: int) -> str:
        return f"{self.queue}$drained:{number}"

    async def take(self, limit: int = DRAIN_LIMIT) -> list[dict[str, Any]]:
        """Take up to ``limit`` queued messages for the channel (oldest first), without waiting.

        Calling it says the batch it returned last was handed over. Messages queued for
        another channel of this process (one ``new_channel()`` of a test, say) go to the
        layer's receive buffer, where its own ``receive()`` finds them.
        """
        if self._unsettled:
            await self.put_back()
        previous = self._backup(self._taken)
        self._taken += 1
        self._unsettled = True  # until the answer is in
        items = await self.layer.connection(self.index).eval(
            DRAIN_SCRIPT, 3, self.queue, previous, self._backup(self._taken), limit, BACKUP_SECONDS
        )
        self._unsettled = False
        mine: list[dict[str, Any]] = []
        for member in items[0::2]:
            try:
                message = self.layer.deserialize(member)
            except Exception:
                logger.exception("Dropping a layer message that does not decode")
                continue
            targets = message.pop("__asgi_channel__", self.channel)
            if isinstance(targets, str):
                targets = [targets]
            for target in targets:
                if target == self.channel:
                    mine.append(message)
                else:
                    self.layer.receive_buffer[target].put_nowait(message)
        return mine

    async def put_back(self) -> int:
        """Put the batch of the drain whose answer was lost back in the queue; return how many.

        Raises when Redis fails again; the next ``take()`` tries once more first.
        """
        self._unsettled = True
        current, previous = self._backup(self._taken), self._backup(self._taken - 1)
        count = await self.layer.connection(self.index).eval(
            PUT_BACK_SCRIPT, 3, self.queue, current, previous
        )
        self._unsettled = False
        return int(count)
