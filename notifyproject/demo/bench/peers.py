"""The same recipients written the way django-notifications-hq and its community fork do it.

django-notifications-hq does not load on Django >= 5.1, so its write path is re-enacted: a
model of the exact shape of its ``notifications_notification`` table (generic foreign keys to
actor, target and action object, verb, description, level, unread, public, deleted, emailed,
data JSON, timestamp, and the same indexes), registered in an isolated app registry (no model
is added to the app) and created as a real table named after the run, dropped afterwards.

- ``notify.send(actor, recipient=users, verb=...)`` loops over the recipients and calls
  ``save()`` once per row, each in its own autocommit transaction: ``time_one_by_one``.
- Its community fork builds the same rows and writes them with one ``bulk_create``:
  ``time_bulk``.
- Ours: ``dispatch_notification`` for one ``all`` (or group) notification: claim, then
  ``INSERT … SELECT`` of narrow Delivery rows in chunks of users, all in one transaction (the
  listener does the same in two, push between them): ``time_ours``.

A real table rather than a TEMP one: temporary tables skip the write-ahead log (and its
fsyncs) on both SQLite and PostgreSQL, which would flatter the peers. The foreign-key
constraints are left out (the ids are plain indexed integers), as they are on our Delivery
table (its foreign keys are kept by Django): like for like.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from django.apps.registry import Apps
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.db.models import QuerySet
from django.utils import timezone

from notifications.dispatch import dispatch_notification
from notifications.models import Audience, Notification


def peer_table_name(run_id: str) -> str:
    return f"bench_{run_id}_hq_notification"


class UserIdField(models.Field):
    """A column typed as a foreign key to the user model would be (integer, UUID, ...).

    hq's ``recipient`` is such a foreign key; the peer table lives in a registry of its own,
    where the user model cannot be referenced, so the column copies its target's type.
    """

    @staticmethod
    def target() -> models.Field:
        return get_user_model()._meta.pk

    def db_type(self, connection: Any) -> str | None:
        return self.target().rel_db_type(connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        return self.target().get_db_prep_value(value, connection, prepared)


def hq_model(run_id: str) -> type[models.Model]:
    """Return a model shaped like django-notifications-hq's Notification, in its own registry."""
    table = peer_table_name(run_id)

    class Meta:
        apps = Apps()
        app_label = "notifications_bench"
        db_table = table
        indexes = [models.Index(fields=["recipient_id", "unread"], name=f"b{run_id}_rcpt_unread")]

    def __str__(self: Any) -> str:
        return f"{self.verb} -> {self.recipient_id}"

    attrs: dict[str, Any] = {
        "__module__": __name__,
        "Meta": Meta,
        "__str__": __str__,
        "level": models.CharField(max_length=20, default="info"),
        "recipient_id": UserIdField(db_index=True),
        "unread": models.BooleanField(default=True, db_index=True),
        "actor_content_type_id": models.IntegerField(db_index=True),
        "actor_object_id": models.CharField(max_length=255),
        "verb": models.CharField(max_length=255),
        "description": models.TextField(blank=True, null=True),
        "target_content_type_id": models.IntegerField(blank=True, null=True, db_index=True),
        "target_object_id": models.CharField(max_length=255, blank=True, null=True),
        "action_object_content_type_id": models.IntegerField(blank=True, null=True, db_index=True),
        "action_object_object_id": models.CharField(max_length=255, blank=True, null=True),
        "timestamp": models.DateTimeField(default=timezone.now, db_index=True),
        "public": models.BooleanField(default=True, db_index=True),
        "deleted": models.BooleanField(default=False, db_index=True),
        "emailed": models.BooleanField(default=False, db_index=True),
        "data": models.JSONField(blank=True, null=True),
    }
    return type(f"HqNotification{run_id}", (models.Model,), attrs)


def create_table(model: type[models.Model]) -> None:
    with connection.schema_editor() as editor:
        editor.create_model(model)


def drop_table(model: type[models.Model]) -> None:
    if model._meta.db_table in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.delete_model(model)


def drop_leftover_tables(pattern: str) -> int:
    """Drop tables of interrupted runs whose names match ``pattern``."""
    dropped = 0
    for name in connection.introspection.table_names():
        if re.match(pattern, name):
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {connection.ops.quote_name(name)}")
            dropped += 1
    return dropped


def _row(model: type[models.Model], recipient: Any, actor: Any, actor_type: int, now: Any) -> Any:
    # What notify_handler builds for each recipient.
    return model(
        recipient_id=recipient.pk,
        actor_content_type_id=actor_type,
        actor_object_id=str(actor.pk),
        verb="published a benchmark result",
        public=True,
        description="One of many recipients",
        timestamp=now,
        level="info",
    )


def time_one_by_one(model: type[models.Model], recipients: QuerySet[Any], actor: Any) -> float:
    """Seconds for notify.send's loop: one save() (one INSERT, one commit) per recipient."""
    started = time.perf_counter()
    actor_type = ContentType.objects.get_for_model(actor).pk
    now = timezone.now()
    for recipient in recipients:  # notify.send evaluates the queryset first, too
        _row(model, recipient, actor, actor_type, now).save()
    return time.perf_counter() - started


def time_bulk(model: type[models.Model], recipients: QuerySet[Any], actor: Any) -> float:
    """Seconds for the fork's path: the same rows, one bulk_create."""
    started = time.perf_counter()
    actor_type = ContentType.objects.get_for_model(actor).pk
    now = timezone.now()
    rows = [_row(model, recipient, actor, actor_type, now) for recipient in recipients]
    model._default_manager.bulk_create(rows)
    return time.perf_counter() - started


def time_ours(title: str, audience: str, group_id: int | None) -> tuple[float, int]:
    """Seconds for ``dispatch_notification`` of one broadcast, and its recipient count.

    The row is created scheduled a day ahead (and without ``save()``, so nothing publishes
    it), which keeps every listener's sweep away from it; it is then dispatched "as of" that
    time, which is what the listener does when the time comes.
    """
    publish_at = timezone.now() + timedelta(days=1)
    (notification,) = Notification.objects.bulk_create(
        [
            Notification(
                title=title,
                audience=audience,
                group_id=group_id if audience == Audience.GROUP else None,
                publish_at=publish_at,
            )
        ]
    )
    started = time.perf_counter()
    result = dispatch_notification(notification.pk, now=publish_at)
    elapsed = time.perf_counter() - started
    return elapsed, result.recipient_count if result else 0
