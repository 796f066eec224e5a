"""Who a notification is for, as a queryset the database can join against, and how many."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import OperationalError, connections, transaction
from django.db.models import QuerySet

from notifications.models import Audience, Notification

logger = logging.getLogger(__name__)


def audience_queryset(notification: Notification) -> Any:
    """Return the active users the notification is meant for."""
    users = get_user_model().objects.filter(is_active=True)
    if notification.audience == Audience.USER:
        return users.filter(pk=notification.recipient_id)
    if notification.audience == Audience.GROUP:
        return users.filter(groups=notification.group_id)
    if notification.audience == Audience.STAFF:
        return users.filter(is_staff=True)
    if notification.audience == Audience.ALL:
        return users
    raise ValueError(f"unknown audience {notification.audience!r}")


# Counting an audience for the compose form stops here: past a million the exact number
# changes no decision, and the LIMIT bounds the scan however large the user table grows.
AUDIENCE_COUNT_CAP = 1_000_000
# The compose form asks as the audience changes; a count that takes longer than this is
# given up (the form says "could not count") rather than holding a request and a database
# connection while an admin clicks on.
AUDIENCE_COUNT_SECONDS = 2.0
# SQLite checks the deadline every this many virtual-machine instructions: often enough to
# stop within milliseconds of it, rarely enough to cost nothing measurable.
_SQLITE_PROGRESS_STEPS = 10_000


@dataclass(frozen=True)
class AudienceSize:
    """How many active users an audience reaches: ``count`` is None when it took too long."""

    count: int | None
    capped: bool = False


def audience_users(
    audience: str, *, recipient_id: Any = None, group_id: Any = None
) -> QuerySet[Any]:
    """Return the active users an audience would reach, as ``audience_queryset`` resolves it."""
    return audience_queryset(
        Notification(audience=audience, recipient_id=recipient_id, group_id=group_id)
    )


def audience_size(
    audience: str,
    *,
    recipient_id: Any = None,
    group_id: Any = None,
    cap: int = AUDIENCE_COUNT_CAP,
    seconds: float = AUDIENCE_COUNT_SECONDS,
) -> AudienceSize:
    """Count the active users an audience reaches, at most ``cap``, within ``seconds``."""
    if audience == Audience.USER and recipient_id is None:
        return AudienceSize(0)
    if audience == Audience.GROUP and group_id is None:
        return AudienceSize(0)
    users = audience_users(audience, recipient_id=recipient_id, group_id=group_id)
    try:
        with _statement_deadline(users.db, seconds):
            # COUNT(*) over a LIMITed subquery: the database stops at the cap.
            count = users.order_by().values("pk")[: cap + 1].count()
    except OperationalError:
        logger.warning("Counting the audience %r took over %g s; gave up", audience, seconds)
        return AudienceSize(None)
    return AudienceSize(min(count, cap), capped=count > cap)


@contextmanager
def _statement_deadline(alias: str, seconds: float) -> Iterator[None]:
    """Abort the statements run inside after ``seconds`` with an ``OperationalError``."""
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            # SET LOCAL ends with this transaction: the pooled connection keeps no timeout.
            cursor.execute(
                # At least 1 ms: 0 would mean no timeout at all.
                "SELECT set_config('statement_timeout', %s, true)",
                [f"{max(1, int(seconds * 1000))}ms"],
            )
            yield
        return
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        raw = connection.connection
        deadline = time.monotonic() + seconds
        raw.set_progress_handler(lambda: time.monotonic() > deadline, _SQLITE_PROGRESS_STEPS)
        try:
            yield
        finally:
            raw.set_progress_handler(None, 0)
        return
    yield
