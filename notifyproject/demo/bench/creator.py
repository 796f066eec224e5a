"""Commit notifications for ``bench_notifications`` and say when each commit happened.

Run by the benchmark as ``python -m notifyproject.demo.bench.creator`` with its environment (its
own ``NOTIFICATIONS_CHANNEL`` and ``CHANNELS_PREFIX``). It creates notifications the way an
application does, one ``notify()`` / ``broadcast()`` per transaction, and records
``time.time()`` in an ``on_commit`` callback registered *before* the create, so it runs right
after COMMIT and before the app's own callback publishes. Latency is measured from there.

JSON lines: the first line out is ``{"ready": true, ...}`` with the settings it runs with;
then one reply per command read from stdin:

- ``single`` ``{"recipients": [user ids as strings], "rate": per second or null (as fast as
  possible), "duration": s or null, "count": n or null, "start_at": wall time, "title": str}``
  → ``{"created": [[id, recipient id (a string), commit time, call start, call end], ...],
  "errors": n, "error": str | null}`` (wall times: the call's start and end bracket the whole
  ``notify()``, INSERT, COMMIT and PUBLISH, including any wait for a database lock);
- ``broadcast`` ``{"audience": "all" | "group", "group": id | null, "title": str,
  "start_at": wall time, "category": slug (optional)}`` → ``{"id": id, "t": commit time}``;
- ``recall`` ``{"id": notification id}`` → ``{"recalled": bool, "t": commit time, "called":
  t, "returned": t}`` (``notifications.recall()`` in its own transaction; its push goes out
  after the commit, so ``t`` comes first);
- ``quit``, or the end of stdin.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

MAX_ERRORS = 50


def _reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _sleep_until(wall_time: float | None) -> None:
    if wall_time is not None:
        delay = wall_time - time.time()
        if delay > 0:
            time.sleep(delay)


def committed(create: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``create`` in its own transaction; return its result and the commit's wall time."""
    from django.db import transaction

    stamp: list[float] = []
    with transaction.atomic():
        # Registered first, so it runs before the publish callback the save registers.
        transaction.on_commit(lambda: stamp.append(time.time()))
        result = create()
    return result, stamp[0]


def create_single(command: dict[str, Any]) -> dict[str, Any]:
    """Create single-user notifications at a steady rate, or as fast as possible."""
    from django.contrib.auth import get_user_model

    from notifications.services import notify

    # Ids arrive as strings (JSON has no UUID); keyed by str(pk), they match any pk type.
    wanted = [str(pk) for pk in command["recipients"]]
    by_id = {str(pk): user for pk, user in get_user_model().objects.in_bulk(wanted).items()}
    users = [by_id[pk] for pk in wanted if pk in by_id]
    if not users:
        return {"created": [], "errors": 0, "error": "no recipients"}
    rate = command.get("rate")
    duration = command.get("duration")
    count = command.get("count")
    if duration is None and count is None:
        return {"created": [], "errors": 0, "error": "give a duration or a count"}
    title = command["title"]
    # Grouping (G1): every one carries the key; actors, if given, take turns.
    group_key = command.get("group_key") or ""
    actor_ids = [str(pk) for pk in command.get("actors") or ()]
    actors = list(get_user_model().objects.in_bulk(actor_ids).values()) if actor_ids else []
    created: list[list[Any]] = []
    errors = 0
    first_error: str | None = None
    _sleep_until(command.get("start_at"))
    started = time.monotonic()
    index = 0
    while errors < MAX_ERRORS:
        if count is not None and index >= count:
            break
        now = time.monotonic()
        if duration is not None and now - started >= duration:
            break
        if rate:
            due = started + index / rate
            if due - started >= (duration or float("inf")):
                break
            if due > now:
                time.sleep(due - now)
        user = users[index % len(users)]
        index += 1
        called = time.time()
        try:
            notification, at = committed(
                lambda user=user, index=index: notify(
                    user,
                    f"{title} #{index}",
                    group_key=group_key,
                    actor=actors[index % len(actors)] if actors else None,
                )
            )
        except Exception as exc:  # recorded; the benchmark reports it
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            continue
        created.append([notification.pk, str(user.pk), at, called, time.time()])
    return {"created": created, "errors": errors, "error": first_error}


def create_broadcast(command: dict[str, Any]) -> dict[str, Any]:
    """Create one broadcast (to everyone, or to one group's members)."""
    from django.contrib.auth.models import Group

    from notifications.services import broadcast

    group = Group.objects.get(pk=command["group"]) if command.get("group") else None
    _sleep_until(command.get("start_at"))
    category = command.get("category")
    notification, at = committed(
        lambda: broadcast(
            command["title"], audience=command["audience"], group=group, category=category
        )
    )
    return {"id": notification.pk, "t": at}


def create_recall(command: dict[str, Any]) -> dict[str, Any]:
    """Recall one notification, the way the app or the admin does."""
    from notifications import recall
    from notifications.models import Notification

    notification = Notification.objects.get(pk=command["id"])
    called = time.time()
    recalled, at = committed(lambda: recall(notification))
    return {"recalled": recalled, "t": at, "called": called, "returned": time.time()}


def main() -> None:
    # Ctrl-C belongs to the benchmark, which tells us to stop; so does the end of stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from notifications import conf, publisher

    layer_config = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {})
    connection.ensure_connection()
    # Connect the PUBLISH client now, so the first notification does not pay for it.
    publisher._get_client().ping()
    _reply(
        {
            "ready": True,
            "pid": os.getpid(),
            "channel": conf.get().CHANNEL,
            "prefix": layer_config.get("prefix"),
            "database": str(connection.settings_dict.get("NAME")),
        }
    )
    for line in sys.stdin:
        try:
            command = json.loads(line)
            name = command.get("cmd")
            if name == "quit":
                break
            if name == "single":
                result = create_single(command)
            elif name == "broadcast":
                result = create_broadcast(command)
            elif name == "recall":
                result = create_recall(command)
            else:
                result = {"error": f"unknown command {name!r}"}
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        _reply(result)


if __name__ == "__main__":
    main()
