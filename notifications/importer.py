"""Import django-notifications' rows, left in their own table, as our notifications.

django-notifications-hq and its community fork are the Python package ``notifications`` too,
so they cannot be installed beside this app: a site that switches uninstalls them and keeps
their table. This module reads that table with raw SQL (their models are gone) and writes, per
row, one ``Notification`` to the recipient and its ``Delivery`` with the read state kept.

Imported rows are history, not news: they are written already dispatched and recorded with
``bulk_create`` (which never calls ``Notification.save()``, so nothing is published), in the
order of their timestamps, so that dispatch order (Delivery ids) and the inbox's order (ids)
match the order the site saw them in. Each source row is recorded in ``ImportedNotification``
in the same transaction, so a second run imports nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import Truncator

from notifications.models import (
    Audience,
    Delivery,
    DeliveryState,
    ImportedNotification,
    Level,
    Notification,
)
from notifications.validators import MAX_URL_LENGTH, validate_notification_url

DEFAULT_TABLE = "notifications_notification"
# Rows per transaction: a batch's lookups are one query per content type, its writes three
# bulk inserts; 1,000 keeps each transaction (and SQLite's write lock) well under a second.
DEFAULT_BATCH_SIZE = 1000
# The model's limits (Notification.title's max_length; body's form limit).
TITLE_MAX_LENGTH = Notification._meta.get_field("title").max_length or 200
BODY_MAX_LENGTH = Notification._meta.get_field("body").max_length or 10_000
# A row whose actor and verb both render empty still needs a title (the model requires one).
UNTITLED = "Notification"

# Without these an import cannot say who got what, when, or whether they read it.
REQUIRED_COLUMNS = (
    "id",
    "recipient_id",
    "unread",
    "actor_content_type_id",
    "actor_object_id",
    "verb",
    "timestamp",
)
# Columns added over django-notifications' history (``deleted`` in its 0002, …): an older
# table without one imports with the value its model would have had.
OPTIONAL_COLUMNS: dict[str, Any] = {
    "level": Level.INFO.value,
    "description": None,
    "target_content_type_id": None,
    "target_object_id": None,
    "action_object_content_type_id": None,
    "action_object_object_id": None,
    "public": True,
    "deleted": False,
}
LEVELS = frozenset(level.value for level in Level)


class SourceTableError(Exception):
    """The table to import is missing or does not look like django-notifications' table."""


@dataclass
class ImportStats:
    """What an import did (or, in a dry run, would do), row by row of the source table."""

    total: int = 0
    imported: int = 0
    already_imported: int = 0
    deleted: int = 0
    without_recipient: int = 0
    inactive_recipient: int = 0

    @property
    def seen(self) -> int:
        return (
            self.imported
            + self.already_imported
            + self.deleted
            + self.without_recipient
            + self.inactive_recipient
        )

    def line(self, *, dry_run: bool = False) -> str:
        """Return the progress line: ``imported 3,000 of 10,412 (skipped …)``."""
        verb = "would import" if dry_run else "imported"
        skipped = [
            f"{self.deleted:,} deleted",
            f"{self.without_recipient:,} without recipient",
            f"{self.inactive_recipient:,} inactive recipient",
            f"{self.already_imported:,} already imported",
        ]
        return f"{verb} {self.imported:,} of {self.total:,} (skipped {', '.join(skipped)})"


@dataclass(frozen=True)
class SourceRow:
    """One row of django-notifications' table, as read by raw SQL."""

    id: Any
    recipient_id: Any
    unread: bool
    actor_content_type_id: Any
    actor_object_id: Any
    verb: str
    timestamp: datetime
    level: str = Level.INFO.value
    description: str | None = None
    target_content_type_id: Any = None
    target_object_id: Any = None
    action_object_content_type_id: Any = None
    action_object_object_id: Any = None
    public: bool = True
    deleted: bool = False


def import_notifications(
    *,
    table: str = DEFAULT_TABLE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    using: str = DEFAULT_DB_ALIAS,
    dry_run: bool = False,
    include_inactive: bool = False,
    progress: Callable[[ImportStats], None] | None = None,
) -> ImportStats:
    """Import every row of ``table`` not imported yet; return the counts.

    Batches follow the source's (timestamp, id) order, one transaction each, so an interrupted
    run keeps what it wrote and the next run continues where it stopped. ``progress`` is called
    after each batch. A dry run reads and renders everything and writes nothing.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    connection = connections[using]
    columns = source_columns(connection, table)
    stats = ImportStats(total=count_rows(connection, table))
    after = None
    while True:
        rows = read_batch(connection, table, columns, after=after, limit=batch_size)
        if not rows:
            break
        after = rows[-1].id
        import_batch(
            rows,
            table=table,
            using=using,
            stats=stats,
            dry_run=dry_run,
            include_inactive=include_inactive,
        )
        if progress is not None:
            progress(stats)
    return stats


def source_columns(connection: BaseDatabaseWrapper, table: str) -> list[str]:
    """Return the columns to read from ``table``; fail clearly if it is not importable."""
    with connection.cursor() as cursor:
        if table not in connection.introspection.table_names(cursor):
            raise SourceTableError(
                f"There is no table {table!r} in database {connection.alias!r}. "
                "django-notifications' table is notifications_notification unless "
                "NOTIFICATIONS_NOTIFICATION_MODEL swapped in another model: pass --table."
            )
        present = {
            column.name for column in connection.introspection.get_table_description(cursor, table)
        }
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        raise SourceTableError(
            f"Table {table!r} is not a django-notifications table: it has no "
            f"{', '.join(missing)} column(s)."
        )
    return [*REQUIRED_COLUMNS, *(name for name in OPTIONAL_COLUMNS if name in present)]


def count_rows(connection: BaseDatabaseWrapper, table: str) -> int:
    """Return how many rows ``table`` holds (the "of N" of the progress line)."""
    with connection.cursor() as cursor:
        # The table name was checked against the database's own list and is quoted.
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
        return int(cursor.fetchone()[0])


def read_batch(
    connection: BaseDatabaseWrapper,
    table: str,
    columns: list[str],
    *,
    after: Any = None,
    limit: int = DEFAULT_BATCH_SIZE,
) -> list[SourceRow]:
    """Return up to ``limit`` rows in (timestamp, id) order, after the row whose id is ``after``.

    The keyset is the last row's id alone: the database looks its timestamp up itself, so no
    datetime makes a round trip through Python (SQLite compares them as text, and a value
    formatted differently from the stored one would skip or repeat rows). The leading
    ``timestamp >=`` lets the timestamp index serve the scan.
    """
    qn = connection.ops.quote_name
    source, ts, pk = qn(table), qn("timestamp"), qn("id")
    select = ", ".join(qn(name) for name in columns)
    if after is None:
        where, params = "", []
    else:
        cursor_ts = f"(SELECT {ts} FROM {source} WHERE {pk} = %s)"  # noqa: S608
        where = f"WHERE {ts} >= {cursor_ts} AND ({ts} > {cursor_ts} OR {pk} > %s)"
        params = [after, after, after]
    # Identifiers come from the database's own table list and REQUIRED/OPTIONAL_COLUMNS.
    sql = f"SELECT {select} FROM {source} {where} ORDER BY {ts}, {pk} LIMIT %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        fetched = cursor.fetchall()
    rows = []
    for values in fetched:
        raw = dict(zip(columns, values, strict=True))
        rows.append(
            SourceRow(
                **{
                    **OPTIONAL_COLUMNS,
                    **raw,
                    "unread": bool(raw["unread"]),
                    "public": bool(raw.get("public", True)),
                    "deleted": bool(raw.get("deleted", False)),
                    "timestamp": aware_datetime(connection, raw["timestamp"]),
                }
            )
        )
    return rows


def aware_datetime(connection: BaseDatabaseWrapper, value: Any) -> datetime:
    """Return a datetime read by raw SQL as the ORM would have: aware when USE_TZ is on.

    PostgreSQL hands back aware datetimes; SQLite (and MySQL) store naive ones in the
    connection's time zone, which their backends' own converter applies.
    """
    convert = getattr(connection.ops, "convert_datetimefield_value", None)
    if convert is not None:
        value = convert(value, None, connection)
    if isinstance(value, str):
        value = parse_datetime(value) or value
    if not isinstance(value, datetime):
        raise SourceTableError(f"Cannot read the timestamp {value!r} as a datetime.")
    if settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value, connection.timezone)
    return value


def import_batch(
    rows: list[SourceRow],
    *,
    table: str,
    using: str = DEFAULT_DB_ALIAS,
    stats: ImportStats,
    dry_run: bool = False,
    include_inactive: bool = False,
) -> int:
    """Import one batch in one transaction; update ``stats``; return how many were imported."""
    with transaction.atomic(using=using):
        wanted = _classify(rows, table, using, stats, include_inactive)
        objects = ObjectResolver(using)
        objects.load((row.actor_content_type_id, row.actor_object_id) for row, _user in wanted)
        objects.load((row.target_content_type_id, row.target_object_id) for row, _user in wanted)
        objects.load(
            (row.action_object_content_type_id, row.action_object_object_id)
            for row, _user in wanted
        )
        notifications = [build_notification(row, user, objects) for row, user in wanted]
        stats.imported += len(notifications)
        if dry_run or not notifications:
            return len(notifications)
        Notification.objects.using(using).bulk_create(notifications)
        if any(notification.pk is None for notification in notifications):
            # Only backends that return ids from a bulk insert can link the deliveries.
            raise DatabaseError("This database backend does not return ids from bulk_create.")
        Delivery.objects.using(using).bulk_create(
            [
                build_delivery(row, notification)
                for (row, _), notification in zip(wanted, notifications, strict=True)
            ]
        )
        ImportedNotification.objects.using(using).bulk_create(
            [
                ImportedNotification(
                    source_table=table, source_id=str(row.id), notification=notification
                )
                for (row, _), notification in zip(wanted, notifications, strict=True)
            ]
        )
    return len(notifications)


def _classify(
    rows: list[SourceRow],
    table: str,
    using: str,
    stats: ImportStats,
    include_inactive: bool,
) -> list[tuple[SourceRow, Model]]:
    """Count the rows to skip; return the others with their recipient, in source order."""
    done = set(
        ImportedNotification.objects.using(using)
        .filter(source_table=table, source_id__in=[str(row.id) for row in rows])
        .values_list("source_id", flat=True)
    )
    user_model = get_user_model()
    keys = {}
    for row in rows:
        key = _to_pk(user_model, row.recipient_id)
        if key is not None:
            keys[row.id] = key
    # The base manager: a site's default manager may hide users (soft-deleted, say) whose
    # rows still exist, and those are still somebody's notifications.
    users = user_model._base_manager.using(using).in_bulk(set(keys.values()))
    wanted = []
    for row in rows:
        if row.deleted:
            stats.deleted += 1
            continue
        if str(row.id) in done:
            stats.already_imported += 1
            continue
        user = users.get(keys.get(row.id))
        if user is None:
            stats.without_recipient += 1
            continue
        if not include_inactive and not getattr(user, "is_active", True):
            stats.inactive_recipient += 1
            continue
        wanted.append((row, user))
    return wanted


def _to_pk(model: type[Model], raw: Any) -> Any:
    """Return ``raw`` as a value of ``model``'s primary key, or None if it cannot be one."""
    if raw is None or raw == "":
        return None
    try:
        return model._meta.pk.to_python(raw)
    except (ValidationError, ValueError, TypeError):
        return None


@dataclass
class ObjectResolver:
    """Resolve the generic foreign keys of a batch: one query per content type.

    A content type whose model is gone, an object that was deleted, an id that is not a valid
    key or an ``__str__`` that raises all become a readable fallback, never an error: an
    import of years of history must not stop at one odd row.
    """

    using: str = DEFAULT_DB_ALIAS
    _objects: dict[tuple[Any, str], Model | None] = field(default_factory=dict)

    def load(self, refs: Iterable[tuple[Any, Any]]) -> None:
        """Fetch the objects behind ``(content type id, object id)`` pairs not fetched yet."""
        wanted: dict[Any, set[str]] = defaultdict(set)
        for content_type_id, object_id in refs:
            if content_type_id is None or object_id is None:
                continue
            if (content_type_id, str(object_id)) not in self._objects:
                wanted[content_type_id].add(str(object_id))
        for content_type_id, object_ids in wanted.items():
            self._load_one_type(content_type_id, object_ids)

    def _load_one_type(self, content_type_id: Any, object_ids: set[str]) -> None:
        for object_id in object_ids:
            self._objects[(content_type_id, object_id)] = None
        model = self._model(content_type_id)
        if model is None:
            return
        keys = {}
        for object_id in object_ids:
            key = _to_pk(model, object_id)
            if key is not None:
                keys[object_id] = key
        if not keys:
            return
        try:
            # A savepoint: on PostgreSQL a failed query (a model whose table was dropped)
            # would otherwise abort the batch's whole transaction.
            with transaction.atomic(using=self.using):
                found = model._base_manager.using(self.using).in_bulk(set(keys.values()))
        except DatabaseError:
            return
        for object_id, key in keys.items():
            self._objects[(content_type_id, object_id)] = found.get(key)

    def _content_type(self, content_type_id: Any) -> ContentType | None:
        try:
            return ContentType.objects.db_manager(self.using).get_for_id(content_type_id)
        except (ContentType.DoesNotExist, ValueError, TypeError):
            return None

    def _model(self, content_type_id: Any) -> type[Model] | None:
        content_type = self._content_type(content_type_id)
        return content_type.model_class() if content_type is not None else None

    def get(self, content_type_id: Any, object_id: Any) -> Model | None:
        """Return the object, or None if it is gone (or was never loaded)."""
        if content_type_id is None or object_id is None:
            return None
        return self._objects.get((content_type_id, str(object_id)))

    def describe(self, content_type_id: Any, object_id: Any) -> str | None:
        """Return the object's text as their ``__str__`` showed it; a fallback if it is gone.

        None means the row has no such object (no target, say), which leaves it out of the title.
        """
        if content_type_id is None or object_id is None or str(object_id) == "":
            return None
        obj = self.get(content_type_id, object_id)
        if obj is not None:
            try:
                text = str(obj)
            except Exception:  # a site's broken __str__ must not stop the import
                text = ""
            if text.strip():
                return text
        return f"{self._type_name(content_type_id)} #{object_id}"

    def _type_name(self, content_type_id: Any) -> str:
        content_type = self._content_type(content_type_id)
        if content_type is None:
            return "object"
        model = content_type.model_class()
        if model is None:  # the app that defined it is gone
            return f"{content_type.app_label}.{content_type.model}"
        return str(model._meta.verbose_name)

    def url(self, content_type_id: Any, object_id: Any) -> str:
        """Return the object's ``get_absolute_url()`` if it has one our links accept, else ""."""
        obj = self.get(content_type_id, object_id)
        get_url = getattr(obj, "get_absolute_url", None)
        if get_url is None:
            return ""
        try:
            url = get_url()
        except Exception:  # e.g. a NoReverseMatch for a URL the site no longer has
            return ""
        if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
            return ""
        try:
            validate_notification_url(url)
        except ValidationError:
            return ""
        return url


def render_title(
    actor: str | None,
    verb: str | None,
    action_object: str | None = None,
    target: str | None = None,
) -> str:
    """Return the title django-notifications' ``__str__`` shows, without "… ago".

    "<actor> <verb> <action_object> on <target>", with the parts a row lacks left out, on one
    line and cut to the title's 200 characters with an ellipsis. Our ``created_at`` carries
    the time, so the relative "3 days ago" (frozen at import time) would only be wrong.
    """
    parts = [actor, verb]
    if action_object:
        parts.append(action_object)
    if target:
        parts.extend(["on", target] if action_object else [target])
    text = " ".join(" ".join(str(part).split()) for part in parts if part and str(part).strip())
    return Truncator(text).chars(TITLE_MAX_LENGTH) if text else UNTITLED


def map_level(level: Any) -> str:
    """Return our level for theirs: the same four names; anything else is ``info``."""
    value = str(level or "").strip().lower()
    return value if value in LEVELS else Level.INFO.value


def build_notification(row: SourceRow, recipient: Model, objects: ObjectResolver) -> Notification:
    """Return the (unsaved) Notification for one row: to one user, already dispatched."""
    title = render_title(
        objects.describe(row.actor_content_type_id, row.actor_object_id),
        row.verb,
        objects.describe(row.action_object_content_type_id, row.action_object_object_id),
        objects.describe(row.target_content_type_id, row.target_object_id),
    )
    url = objects.url(row.target_content_type_id, row.target_object_id) or objects.url(
        row.action_object_content_type_id, row.action_object_object_id
    )
    body = Truncator(row.description).chars(BODY_MAX_LENGTH) if row.description else ""
    return Notification(
        title=title,
        body=body,
        level=map_level(row.level),
        url=url,
        audience=Audience.USER,
        recipient=recipient,
        created_at=row.timestamp,
        # Dispatched and recorded at the moment it was first sent: the listener's sweep skips
        # it, and no browser is pushed years-old news.
        dispatched_at=row.timestamp,
        recorded_at=row.timestamp,
        recipient_count=1,
    )


def build_delivery(row: SourceRow, notification: Notification) -> Delivery:
    """Return the (unsaved) Delivery for one row, with its read state kept.

    Unread rows are ``delivered``, not ``pending``: django-notifications showed them already,
    and the admin's "resend to the undelivered" must not push history. Their table records no
    read or delivery time, so both are the notification's timestamp.
    """
    read = not row.unread
    return Delivery(
        notification=notification,
        user_id=notification.recipient_id,
        state=DeliveryState.READ if read else DeliveryState.DELIVERED,
        created_at=row.timestamp,
        delivered_at=row.timestamp,
        read_at=row.timestamp if read else None,
    )
