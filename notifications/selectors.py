"""Every read: unread counts, a user's page, what a socket missed (with async twins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser

from notifications import conf
from notifications.events import SerializedNotification, serialize_notification
from notifications.models import Delivery, DeliveryState


def _user_rows(user: AbstractBaseUser | Any) -> Any:
    return Delivery.objects.for_user(user).select_related("notification")


def unread_count(user: AbstractBaseUser | Any) -> int:
    """Return how many live notifications the user has not read."""
    return Delivery.objects.for_user(user).unread().count()


def last_notification_id(user: AbstractBaseUser | Any) -> int | None:
    """Return the newest notification id delivered to the user, or None."""
    return (
        Delivery.objects.filter(user=user)
        .order_by("-notification_id")
        .values_list("notification_id", flat=True)
        .first()
    )


def _serialize(delivery: Delivery) -> SerializedNotification:
    return serialize_notification(delivery.notification, read=delivery.state == DeliveryState.READ)


@dataclass(frozen=True)
class Page:
    """One page of a user's notifications, newest first; ``next`` is the next ``before``."""

    unread: int
    results: list[SerializedNotification]
    next: int | None


def notification_page(
    user: AbstractBaseUser | Any,
    *,
    unread_only: bool = False,
    before: int | None = None,
    limit: int = 20,
) -> Page:
    """Return a page of the user's notifications, newest first, cursor-paginated by id."""
    limit = max(1, min(limit, conf.get().MAX_SYNC))
    rows = _user_rows(user)
    if unread_only:
        rows = rows.unread()
    if before is not None:
        rows = rows.filter(notification_id__lt=before)
    batch = list(rows.order_by("-notification_id")[: limit + 1])
    has_more = len(batch) > limit
    batch = batch[:limit]
    return Page(
        unread=unread_count(user),
        results=[_serialize(delivery) for delivery in batch],
        next=batch[-1].notification_id if has_more else None,
    )


def missed_since(user: AbstractBaseUser | Any, since: int | None) -> list[SerializedNotification]:
    """Return what the user got after notification ``since``, oldest first (capped).

    With ``since`` None (a fresh page) it returns the newest MAX_SYNC, still oldest first.
    """
    limit = conf.get().MAX_SYNC
    rows = _user_rows(user)
    if since is None:
        batch = list(rows.order_by("-notification_id")[:limit])
        batch.reverse()
    else:
        batch = list(rows.filter(notification_id__gt=since).order_by("notification_id")[:limit])
    return [_serialize(delivery) for delivery in batch]


aunread_count = database_sync_to_async(unread_count)
alast_notification_id = database_sync_to_async(last_notification_id)
amissed_since = database_sync_to_async(missed_since)
anotification_page = database_sync_to_async(notification_page)
