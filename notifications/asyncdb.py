"""Async twins of database functions that do not queue behind each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async


def db_async(func: Callable[..., Any]) -> Any:
    """Return an async twin of ``func`` run on a pool thread, with a connection of its own.

    Channels' default (thread-sensitive) runs every query of every socket of a daphne
    process on one thread: with thousands of sockets, hellos, acks and pings queue behind
    each other. These functions share no state between calls, so any thread will do.
    """
    return database_sync_to_async(func, thread_sensitive=False)
