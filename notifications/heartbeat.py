"""Listener heartbeats in Redis: written by each listener, read by notifications_health."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from notifications import conf


def _prefix() -> str:
    return f"{conf.get().CHANNEL}:heartbeat:"


def key_for_this_process() -> str:
    return f"{_prefix()}{socket.gethostname()}:{os.getpid()}"


async def awrite(client: aioredis.Redis, fields: dict[str, Any]) -> None:
    """Record that this listener is alive; the key expires if it stops beating."""
    settings = conf.get()
    payload = {**fields, "at": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
    await client.set(
        key_for_this_process(), json.dumps(payload), ex=max(1, int(settings.HEARTBEAT_MAX_AGE))
    )


def read_all(client: redis.Redis) -> list[dict[str, Any]]:
    """Return every live listener's last heartbeat, newest first."""
    beats = []
    for key in client.scan_iter(match=f"{_prefix()}*", count=100):
        raw = client.get(key)
        if raw:
            try:
                beats.append(json.loads(raw))
            except ValueError:
                continue
    return sorted(beats, key=lambda beat: beat.get("at", 0), reverse=True)
