"""Recall and edit a notification already sent: every open bell follows at once.

A recall keeps the notification and its Delivery rows for audit (who, when) and takes it
out of every list and count; an edit changes its text in place. Either is pushed once per
audience group, like the notification itself. A page that was offline meanwhile learns of
both from its next sync (``recent_changes``), so a lost push costs nothing lasting.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from notifications import deadlines
from notifications.dispatch import fan_out_groups
from notifications.events import (
    UserId,
    content_of,
    layer_state_event,
    recalled_frame,
    updated_frame,
)
from notifications.models import Audience, Delivery, Notification
from notifications.observe import emit
from notifications.selectors import unread_count

logger = logging.getLogger(__name__)

# What an edit may change once a notification is out; the audience and the times may not.
EDITABLE_FIELDS = ("title", "body", "url", "level")
# How far back a sync looks for recalls and edits of what the page may still show: the
# bell keeps its list for as long as the page stays open, rarely more than days.
RECENT = timedelta(days=7)
# Most of either a sync carries.
RECENT_LIMIT = 200


def recall(notification: Notification, by: Any = None) -> bool:
    """Recall the notification: out of every bell, inbox and unread count; False if it was.

    Not yet dispatched (scheduled), it is never sent. Pushed to open bells after commit.
    """
    now = timezone.now()
    by_id = getattr(by, "pk", None)
    updated = Notification.objects.filter(pk=notification.pk, recalled_at__isnull=True).update(
        recalled_at=now, recalled_by_id=by_id
    )
    if not updated:
        return False
    notification.recalled_at, notification.recalled_by_id = now, by_id
    # The row's state, not the caller's copy (which may predate the dispatch).
    notification.refresh_from_db(fields=["dispatched_at"])
    emit("recalled", id=notification.pk)
    if notification.dispatched_at is not None:
        transaction.on_commit(lambda: tell_bells(notification, recalled=True))
    return True


def edit(notification: Notification, by: Any = None, **fields: Any) -> list[str]:
    """Change the text of a notification (title, body, url, level); return what changed.

    Validated as a new one would be (``ValidationError``); a sent one is updated in place
    in every open bell after commit. Nothing changed, nothing is saved or pushed.
    """
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(
            {name: "Only the title, body, link and level can be edited." for name in unknown}
        )
    changed = [name for name, value in fields.items() if getattr(notification, name) != value]
    if not changed:
        return []
    for name in changed:
        setattr(notification, name, fields[name])
    notification.full_clean()
    # The row's state, not the caller's copy (which may predate the dispatch or a recall).
    notification.refresh_from_db(fields=["dispatched_at", "recalled_at"])
    notification.edited_at = timezone.now()
    notification.edited_by_id = getattr(by, "pk", None)
    notification.save(update_fields=[*changed, "edited_at", "edited_by"])
    emit("edited", id=notification.pk)
    if notification.dispatched_at is not None and notification.recalled_at is None:
        transaction.on_commit(lambda: tell_bells(notification, recalled=False))
    return changed


def tell_bells(notification: Notification, *, recalled: bool) -> None:
    """Push ``recalled`` or ``updated`` to the audience's sockets; bounded, never raises."""
    try:
        deadlines.push_from_sync(
            apush_change, notification, recalled, seconds=deadlines.PUSH_SECONDS + 0.5
        )
    except Exception as exc:
        logger.warning(
            "Could not push the %s of notification %s (%r); open bells learn it at their next sync",
            "recall" if recalled else "edit",
            notification.pk,
            exc,
        )


async def apush_change(notification: Notification, recalled: bool) -> None:
    """One layer message per audience group (``unread`` only when the group is one user)."""
    layer = get_channel_layer()
    if recalled:
        unread = None
        if notification.audience == Audience.USER and notification.recipient_id is not None:
            from notifications.asyncdb import db_async

            unread = await db_async(unread_count)(notification.recipient_id)
        frame = recalled_frame([notification.pk], unread)
    else:
        frame = updated_frame(content_of(notification))
    sends = [(group, layer_state_event(frame, group)) for group in fan_out_groups(notification)]
    async with asyncio.timeout(deadlines.PUSH_SECONDS):
        await deadlines.group_send_all(layer, sends)


def recent_changes(user_id: UserId, now: datetime | None = None) -> tuple[list[int], list[dict]]:
    """Return (recalled ids, edited contents) among the user's notifications of late.

    Both start from the partial indexes on ``recalled_at`` / ``edited_at`` (few rows) and
    keep those the user has a row of.
    """
    since = (now or timezone.now()) - RECENT
    mine = Delivery.objects.filter(user_id=user_id).values("notification_id")
    recalled = list(
        Notification.objects.filter(recalled_at__gte=since, pk__in=mine)
        .order_by("-recalled_at")
        .values_list("pk", flat=True)[:RECENT_LIMIT]
    )
    edited = [
        content_of(notification)
        for notification in Notification.objects.filter(
            edited_at__gte=since, recalled_at__isnull=True, pk__in=mine
        )
        .only(*EDITABLE_FIELDS, "edited_at")
        .order_by("-edited_at")[:RECENT_LIMIT]
    ]
    return recalled, edited
