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
from typing import Any, NamedTuple

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.utils import timezone

from notifications.events import UserId
from notifications.models import Delivery, DeliveryState, Notification


def _column(model: type, field: str, qn: object) -> str:
    return qn(model._meta.get_field(field).column)  # type: ignore[operator]


@cache
def _badge_sql(alias: str) -> str:
    counted, newest = _badge_subqueries(alias)
    return f"SELECT {counted}, {newest}"


@cache
def _badge_subqueries(alias: str) -> tuple[str, str]:
    """The unread count and the newest delivered id, each a scalar subquery."""
    qn = connections[alias].ops.quote_name
    delivery, notification = qn(Delivery._meta.db_table), qn(Notification._meta.db_table)
    user = _column(Delivery, "user", qn)
    to_notification = _column(Delivery, "notification", qn)
    expires = _column(Notification, "expires_at", qn)
    snoozed = _column(Delivery, "snoozed_until", qn)
    key = f"n.{_column(Notification, 'group_key', qn)}"
    # A group (one non-empty group_key) counts once: its unread rows are one item.
    count = f"COUNT(CASE WHEN {key} = '' THEN 1 END) + COUNT(DISTINCT NULLIF({key}, ''))"
    counted = (
        f"(SELECT {count} FROM {delivery} d INNER JOIN {notification} n"  # noqa: S608
        f" ON d.{to_notification} = n.{_column(Notification, 'id', qn)}"
        f" WHERE d.{user} = %s AND d.{_column(Delivery, 'state', qn)} IN (%s, %s)"
        f" AND (n.{expires} IS NULL OR n.{expires} > %s)"
        f" AND n.{_column(Notification, 'recalled_at', qn)} IS NULL"
        f" AND d.{_column(Delivery, 'archived_at', qn)} IS NULL"
        f" AND (d.{snoozed} IS NULL OR d.{snoozed} <= %s))"
    )
    newest = (
        f"(SELECT d.{to_notification} FROM {delivery} d WHERE d.{user} = %s"  # noqa: S608
        # A recalled one is in no list: naming it would send the bell syncing for nothing.
        f" AND NOT EXISTS (SELECT 1 FROM {notification} r"
        f" WHERE r.{_column(Notification, 'id', qn)} = d.{to_notification}"
        f" AND r.{_column(Notification, 'recalled_at', qn)} IS NOT NULL)"
        f" ORDER BY d.{_column(Delivery, 'id', qn)} DESC LIMIT 1)"
    )
    return counted, newest


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
    alias, connection, params = _count_params(user_id, now)
    with connection.cursor() as cursor:
        cursor.execute(_badge_sql(alias), [*params, params[0]])
        unread, last_id = cursor.fetchone()
    return int(unread or 0), last_id


def _count_params(user_id: UserId, now: datetime | None) -> tuple[str, Any, list[object]]:
    """The database alias, its connection and the count subquery's parameters."""
    alias = router.db_for_read(Delivery)
    connection = connections[alias]
    moment = connection.ops.adapt_datetimefield_value(now or timezone.now())
    user = _prep(Delivery, "user", user_id, connection)
    params = [user, DeliveryState.PENDING.value, DeliveryState.DELIVERED.value, moment, moment]
    return alias, connection, params


@cache
def _unread_sql(alias: str) -> str:
    return f"SELECT {_badge_subqueries(alias)[0]}"


def unread_count(user_id: UserId, now: datetime | None = None) -> int:
    """``badge_state``'s count alone: every read, Done, snooze and unread answers with it,
    and the ORM compiled its aggregate anew each time (a tenth of daphne's GIL under T1)."""
    alias, connection, params = _count_params(user_id, now)
    with connection.cursor() as cursor:
        cursor.execute(_unread_sql(alias), params)
        (unread,) = cursor.fetchone()
    return int(unread or 0)


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


class PingRows(NamedTuple):
    """What one ping statement read (``ping_rows``)."""

    unread: int
    last_id: int | None
    is_staff: bool | None  # None: no such user, or inactive
    group_ids: list[int]
    bell_choices: dict[str, bool]  # the user's CategoryPreference rows: slug -> bell
    session_exists: bool | None  # None: not asked (no session model given)


@cache
def _ping_sql(alias: str, session_model: type | None) -> str:
    """Badge, user, auth groups, category choices (and the session row) as one UNION ALL.

    Every ping ran five queries through the ORM (two of them compiled each time): at 2,500
    sockets that was 400 statements a second, and on PostgreSQL five round trips per ping
    that kept daphne's pool threads waiting and its event loop short of the GIL. Rows are
    (kind, number, text): 0 unread, 1 last id, 2 the active user (number: is_staff),
    3 an auth group id, 4 a category choice (number: bell, text: slug), 5 the session.
    """
    connection = connections[alias]
    qn = connection.ops.quote_name
    counted, newest = _badge_subqueries(alias)
    user_model = get_user_model()
    through = user_model.groups.through
    preference = _preference_model()
    parts = [
        f"SELECT 0, {counted}, NULL",
        f"SELECT 1, {newest}, NULL",
        f"SELECT 2, CASE WHEN {_column(user_model, 'is_staff', qn)} THEN 1 ELSE 0 END, NULL"  # noqa: S608
        f" FROM {qn(user_model._meta.db_table)} WHERE {qn(user_model._meta.pk.column)} = %s"
        f" AND {_column(user_model, 'is_active', qn)}",
        f"SELECT 3, {_column(through, 'group', qn)}, NULL FROM {qn(through._meta.db_table)}"  # noqa: S608
        f" WHERE {_column(through, 'user', qn)} = %s",
        f"SELECT 4, CASE WHEN {_column(preference, 'bell', qn)} THEN 1 ELSE 0 END,"  # noqa: S608
        f" {_column(preference, 'category', qn)} FROM {qn(preference._meta.db_table)}"
        f" WHERE {_column(preference, 'user', qn)} = %s",
    ]
    if session_model is not None:
        parts.append(
            f"SELECT 5, 1, NULL FROM {qn(session_model._meta.db_table)}"  # noqa: S608
            f" WHERE {_column(session_model, 'session_key', qn)} = %s"
        )
    return " UNION ALL ".join(parts)


@cache
def ping_rows_supported() -> bool:
    """Whether the user model has the concrete ``is_active`` and ``is_staff`` columns that
    ``ping_rows`` reads (AbstractUser's; a custom model may have neither)."""
    fields = {field.name for field in get_user_model()._meta.concrete_fields}
    return {"is_active", "is_staff"} <= fields


def _preference_model() -> type:
    from notifications.models import CategoryPreference

    return CategoryPreference


def ping_rows(
    user_id: UserId,
    session_model: type | None = None,
    session_key: str | None = None,
    now: datetime | None = None,
) -> PingRows:
    """Read everything a ping checks in one statement (``_ping_sql``).

    With ``session_model`` (the database session backend's model) the session's row is
    looked for too, as its ``SessionStore.exists()`` does: there, expired or not.
    """
    alias = router.db_for_read(Delivery)
    connection = connections[alias]
    moment = connection.ops.adapt_datetimefield_value(now or timezone.now())
    delivery_user = _prep(Delivery, "user", user_id, connection)
    user_model = get_user_model()
    params: list[object] = [
        delivery_user,
        DeliveryState.PENDING.value,
        DeliveryState.DELIVERED.value,
        moment,
        moment,
        delivery_user,
        _prep(user_model, user_model._meta.pk.name, user_id, connection),
        _prep(user_model.groups.through, "user", user_id, connection),
        _prep(_preference_model(), "user", user_id, connection),
    ]
    if session_model is not None:
        params.append(session_key)
    unread, last_id, is_staff, session = 0, None, None, False
    group_ids: list[int] = []
    choices: dict[str, bool] = {}
    with connection.cursor() as cursor:
        cursor.execute(_ping_sql(alias, session_model), params)
        for kind, number, text in cursor.fetchall():
            if kind == 0:
                unread = int(number or 0)
            elif kind == 1:
                last_id = number
            elif kind == 2:
                is_staff = bool(number)
            elif kind == 3:
                group_ids.append(number)
            elif kind == 4:
                choices[text] = bool(number)
            else:
                session = True
    return PingRows(
        unread, last_id, is_staff, group_ids, choices, session if session_model else None
    )
