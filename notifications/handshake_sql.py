"""The queries every socket runs (hello, pong, a handshake's groups), as SQL built once.

Building these through the ORM cost more CPU than running them: at a burst of handshakes,
compiling the unread-and-last-id query (two subqueries and a join) took about a millisecond
of daphne's time per socket. The statements are built once per database alias from the
models' own table and column names, so a custom user model or table prefix still works.
Values are bound the way the ORM would bind them: a user id goes through its field's
``get_db_prep_value`` (SQLite stores a UUID as 32 hex digits; sqlite3 cannot bind a UUID).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.utils import timezone

from notifications.events import UserId
from notifications.models import Delivery, DeliveryState, Notification


def _column(model: type, field: str, qn: object) -> str:
    return qn(model._meta.get_field(field).column)  # type: ignore[operator]


@cache
def _badge_sql(alias: str) -> str:
    qn = connections[alias].ops.quote_name
    delivery, notification = qn(Delivery._meta.db_table), qn(Notification._meta.db_table)
    user = _column(Delivery, "user", qn)
    to_notification = _column(Delivery, "notification", qn)
    expires = _column(Notification, "expires_at", qn)
    snoozed = _column(Delivery, "snoozed_until", qn)
    key = f"n.{_column(Notification, 'group_key', qn)}"
    # A group (one non-empty group_key) counts once: its unread rows are one item.
    count = f"COUNT(CASE WHEN {key} = '' THEN 1 END) + COUNT(DISTINCT NULLIF({key}, ''))"
    return (
        f"SELECT (SELECT {count} FROM {delivery} d INNER JOIN {notification} n"  # noqa: S608
        f" ON d.{to_notification} = n.{_column(Notification, 'id', qn)}"
        f" WHERE d.{user} = %s AND d.{_column(Delivery, 'state', qn)} IN (%s, %s)"
        f" AND (n.{expires} IS NULL OR n.{expires} > %s)"
        f" AND n.{_column(Notification, 'recalled_at', qn)} IS NULL"
        f" AND d.{_column(Delivery, 'archived_at', qn)} IS NULL"
        f" AND (d.{snoozed} IS NULL OR d.{snoozed} <= %s)),"
        f" (SELECT d.{to_notification} FROM {delivery} d WHERE d.{user} = %s"
        # A recalled one is in no list: naming it would send the bell syncing for nothing.
        f" AND NOT EXISTS (SELECT 1 FROM {notification} r"
        f" WHERE r.{_column(Notification, 'id', qn)} = d.{to_notification}"
        f" AND r.{_column(Notification, 'recalled_at', qn)} IS NOT NULL)"
        f" ORDER BY d.{_column(Delivery, 'id', qn)} DESC LIMIT 1)"
    )


def _prep(model: type, field: str, value: UserId, connection: object) -> object:
    """Return ``value`` as the database driver takes it for ``model.field``."""
    return model._meta.get_field(field).get_db_prep_value(value, connection)  # type: ignore[attr-defined]


def badge_state(user_id: UserId, now: datetime | None = None) -> tuple[int, int | None]:
    """Return (unread notifications in the bell, notification id of the newest Delivery).

    Unread in the bell: not read, not expired, not archived, not snoozed (a snooze that has
    come due counts again, as ``Delivery.objects.unread()`` has it); the unread rows of one
    ``group_key`` count once, as ``selectors.unread_count`` has it.

    "Newest" is dispatch order (the Delivery row's id), not notification id order: a
    scheduled notification has an old id and is dispatched late. A client that does not
    know this id has missed something.
    """
    alias = router.db_for_read(Delivery)
    connection = connections[alias]
    moment = connection.ops.adapt_datetimefield_value(now or timezone.now())
    user = _prep(Delivery, "user", user_id, connection)
    params = [user, DeliveryState.PENDING.value, DeliveryState.DELIVERED.value, moment, moment]
    with connection.cursor() as cursor:
        cursor.execute(_badge_sql(alias), [*params, user])
        unread, last_id = cursor.fetchone()
    return int(unread or 0), last_id


@cache
def _groups_sql(alias: str) -> str:
    through = get_user_model().groups.through
    qn = connections[alias].ops.quote_name
    return (
        f"SELECT {_column(through, 'group', qn)} FROM {qn(through._meta.db_table)}"  # noqa: S608
        f" WHERE {_column(through, 'user', qn)} = %s"
    )


def auth_group_ids(user_id: UserId) -> list[int]:
    """Return the ids of the auth Groups the user belongs to."""
    through = get_user_model().groups.through
    alias = router.db_for_read(through)
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(_groups_sql(alias), [_prep(through, "user", user_id, connection)])
        return [row[0] for row in cursor.fetchall()]
