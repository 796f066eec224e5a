"""Who a notification is for, as a queryset the database can join against."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from notifications.models import Audience, Notification


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
