"""Every write: create notifications, record deliveries, mark them delivered or read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone

from notifications.models import (
    UNREAD_STATES,
    Audience,
    Delivery,
    DeliveryState,
    Level,
    Notification,
)
from notifications.selectors import unread_count


def notification_create(
    *,
    title: str,
    body: str = "",
    level: str = Level.INFO,
    url: str = "",
    audience: str = Audience.USER,
    recipient: Any = None,
    group: Group | None = None,
    created_by: Any = None,
    publish_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Notification:
    """Validate and save a notification; it is published when the transaction commits.

    Raises ``django.core.exceptions.ValidationError`` naming each bad field.
    """
    notification = Notification(
        title=title,
        body=body or "",
        level=level,
        url=url or "",
        audience=audience,
        recipient=recipient,
        group=group,
        created_by=created_by,
        publish_at=publish_at,
        expires_at=expires_at,
    )
    notification.full_clean()
    notification.save()
    return notification


def notify(
    recipient: Any,
    title: str,
    body: str = "",
    level: str = Level.INFO,
    url: str = "",
    *,
    created_by: Any = None,
    publish_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Notification:
    """Send a notification to one user."""
    return notification_create(
        title=title,
        body=body,
        level=level,
        url=url,
        audience=Audience.USER,
        recipient=recipient,
        created_by=created_by,
        publish_at=publish_at,
        expires_at=expires_at,
    )


def broadcast(
    title: str,
    body: str = "",
    level: str = Level.INFO,
    url: str = "",
    audience: str = Audience.ALL,
    group: Group | None = None,
    *,
    created_by: Any = None,
    publish_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Notification:
    """Send a notification to everyone, all staff, or the members of ``group``."""
    return notification_create(
        title=title,
        body=body,
        level=level,
        url=url,
        audience=audience,
        group=group,
        created_by=created_by,
        publish_at=publish_at,
        expires_at=expires_at,
    )


def deliveries_record(notification_id: int, user_ids: Iterable[int]) -> int:
    """Insert pending Delivery rows for ``user_ids``; rows that exist are left alone.

    Returns how many ids were given. The unique (notification, user) constraint makes a
    second run a no-op, whatever the backend.
    """
    now = timezone.now()
    rows = [
        Delivery(notification_id=notification_id, user_id=user_id, created_at=now)
        for user_id in user_ids
    ]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
    return len(rows)


def _unique_ids(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(i) for i in ids))


def deliveries_mark_delivered(user: AbstractBaseUser | Any, ids: Iterable[int]) -> int:
    """Record that a browser of ``user`` received ``ids``; other users' ids change nothing."""
    ids = _unique_ids(ids)
    if not ids:
        return 0
    return Delivery.objects.filter(
        user=user, notification_id__in=ids, state=DeliveryState.PENDING
    ).update(state=DeliveryState.DELIVERED, delivered_at=timezone.now())


@dataclass(frozen=True)
class ReadResult:
    """Ids that became read now, and the user's unread count afterwards."""

    ids: list[int]
    unread: int


def deliveries_mark_read(user: AbstractBaseUser | Any, ids: Iterable[int]) -> ReadResult:
    """Mark the user's ``ids`` read; ids that are not the user's are ignored, not revealed."""
    ids = _unique_ids(ids)
    changed: list[int] = []
    if ids:
        with transaction.atomic():
            rows = Delivery.objects.filter(
                user=user, notification_id__in=ids, state__in=UNREAD_STATES
            )
            changed = sorted(rows.values_list("notification_id", flat=True))
            if changed:
                _mark_read(Delivery.objects.filter(user=user, notification_id__in=changed))
    return ReadResult(ids=changed, unread=unread_count(user))


def deliveries_mark_all_read(user: AbstractBaseUser | Any) -> ReadResult:
    """Mark every unread notification of the user read."""
    with transaction.atomic():
        rows = Delivery.objects.filter(user=user, state__in=UNREAD_STATES)
        changed = sorted(rows.values_list("notification_id", flat=True))
        if changed:
            _mark_read(Delivery.objects.filter(user=user, notification_id__in=changed))
    return ReadResult(ids=changed, unread=unread_count(user))


def _mark_read(rows: Any) -> None:
    now = timezone.now()
    # A read implies a delivery; keep delivered_at for stats when the ack never came.
    rows.filter(delivered_at__isnull=True).update(delivered_at=now)
    rows.update(state=DeliveryState.READ, read_at=now)


adeliveries_mark_delivered = database_sync_to_async(deliveries_mark_delivered)
adeliveries_mark_read = database_sync_to_async(deliveries_mark_read)
adeliveries_mark_all_read = database_sync_to_async(deliveries_mark_all_read)
