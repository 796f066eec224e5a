"""Take every message waiting on the hub's channel in one round trip, not one each.

channels-redis hands over one message per ``receive()``, at four Redis round trips each
(its backup-queue script, BZPOPMIN, ZADD to the backup, ZPOPMIN from it), each one a turn of
daphne's event loop. When that loop is busy with a thousand sockets, those turns are what
a message waits for: a burst to one user (a thread of comments) held every other user's
pushes up by half a second. The hub still waits for the first message with the layer's own
``receive()`` (it keeps a message popped by a cancelled wait); once one came, it takes the
others queued behind it here, up to a batch at a time.

What is taken is kept in a backup key until the batch has been handed over (the next drain
deletes it): a drain whose answer was lost (Redis failed mid-call) is put back in the queue
by ``restore()``, so nothing is lost; at worst a message is handed over twice, which every
client already tolerates (the bell keeps one of each id).
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

# KEYS[1]: the process's queue; KEYS[2]: the backup of the batch being handed over.
# The previous batch was handed over when the next drain is asked for: forget it first.
DRAIN_SCRIPT = """
redis.call('DEL', KEYS[2])
local items = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
for i = 1, #items, 2 do
    redis.call('ZADD', KEYS[2], items[i + 1], items[i])
end
if #items > 0 then
    redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return items
"""

# Put a backed-up batch back at the front of the queue (scores kept), as channels-redis's
# own clean-up does for its backup.
RESTORE_SCRIPT = """
local items = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #items, 2 do
    redis.call('ZADD', KEYS[1], items[i + 1], items[i])
end
redis.call('DEL', KEYS[2])
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


def _keys(layer: Any, channel: str) -> tuple[int, str, str]:
    real_channel = layer.non_local_name(channel)
    queue = layer.prefix + real_channel
    return layer.consistent_hash(real_channel), queue, queue + "$drained"


async def drain(layer: Any, channel: str, limit: int = DRAIN_LIMIT) -> list[dict[str, Any]]:
    """Take up to ``limit`` queued messages for ``channel`` (oldest first), without waiting.

    Messages queued for another channel of this process (one ``new_channel()`` of a test,
    say) go to the layer's receive buffer, where its own ``receive()`` finds them.
    """
    index, queue, backup = _keys(layer, channel)
    items = await layer.connection(index).eval(
        DRAIN_SCRIPT, 2, queue, backup, limit, BACKUP_SECONDS
    )
    mine: list[dict[str, Any]] = []
    for member in items[0::2]:
        try:
            message = layer.deserialize(member)
        except Exception:
            logger.exception("Dropping a layer message that does not decode")
            continue
        targets = message.pop("__asgi_channel__", channel)
        if isinstance(targets, str):
            targets = [targets]
        for target in targets:
            if target == channel:
                mine.append(message)
            else:
                layer.receive_buffer[target].put_nowait(message)
    return mine


async def restore(layer: Any, channel: str) -> int:
    """Put a batch whose hand-over was cut short back in the queue; return how many."""
    index, queue, backup = _keys(layer, channel)
    return int(await layer.connection(index).eval(RESTORE_SCRIPT, 2, queue, backup))
