"""Every read: unread counts, a user's page, what a socket missed (with async twins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from notifications import conf, handshake_sql
from notifications.asyncdb import db_async
from notifications.events import SerializedNotification, serialize_notification
from notifications.models import UNREAD_STATES, Delivery, DeliveryState


def _user_rows(user: AbstractBaseUser | Any) -> Any:
    return Delivery.objects.for_user(user).select_related("notification")


def unread_count(user: AbstractBaseUser | Any) -> int:
    """Return how many live notifications the user has not read."""
    return Delivery.objects.for_user(user).unread().count()


def _serialize(delivery: Delivery) -> SerializedNotification:
    return serialize_notification(
        delivery.notification,
        read=delivery.state == DeliveryState.READ,
        archived=delivery.archived_at is not None,
        snoozed_until=delivery.snoozed_until,
    )


# The views every list shares (the inbox page's tabs, the API's ``status=``): the default
# (None) is the inbox — neither archived nor snoozed — and "unread" its unread part.
STATUSES = ("unread", "archived", "snoozed")


def rows_in_status(rows: Any, status: str | None, level: str | None = None) -> Any:
    """Filter a user's Delivery rows to one view, and to one level if given."""
    if status is None:
        rows = rows.in_bell()
    elif status == "unread":
        rows = rows.unread()
    elif status == "archived":
        rows = rows.archived()
    elif status == "snoozed":
        rows = rows.snoozed()
    else:
        raise ValueError(f"unknown status {status!r}")
    if level is not None:
        rows = rows.filter(notification__level=level)
    return rows


def _position(user: Any, notification_id: int) -> int | None:
    """Return the dispatch position (Delivery id) of a notification in the user's lists."""
    return (
        Delivery.objects.filter(user=user, notification_id=notification_id)
        .values_list("id", flat=True)
        .first()
    )


def _older_than(rows: Any, user: Any, notification_id: int) -> Any:
    """Rows that arrived before the user's row of ``notification_id`` (keyset cursor).

    An id that is not the user's falls back to notification ids below it.
    """
    position = _position(user, notification_id)
    if position is None:
        return rows.filter(notification_id__lt=notification_id)
    return rows.filter(id__lt=position)


def _newer_than(rows: Any, user: Any, notification_id: int) -> Any:
    position = _position(user, notification_id)
    if position is None:
        return rows.filter(notification_id__gt=notification_id)
    return rows.filter(id__gt=position)


@dataclass(frozen=True)
class Page:
    """One page of a user's notifications, newest first; ``next`` is the next ``before``."""

    unread: int
    results: list[SerializedNotification]
    next: int | None


def notification_page(
    user: AbstractBaseUser | Any,
    *,
    status: str | None = None,
    level: str | None = None,
    unread_only: bool = False,
    before: int | None = None,
    limit: int = 20,
) -> Page:
    """Return a page of the user's notifications in one view, newest arrival first.

    Keyset-paginated in dispatch order; ``before`` and ``next`` are notification ids.
    ``unread_only`` is the old name of ``status="unread"``.
    """
    if unread_only and status is None:
        status = "unread"
    limit = max(1, min(limit, conf.get().MAX_SYNC))
    rows = rows_in_status(_user_rows(user), status, level)
    if before is not None:
        rows = _older_than(rows, user, before)
    batch = list(rows.order_by("-id")[: limit + 1])
    has_more = len(batch) > limit
    batch = batch[:limit]
    return Page(
        unread=unread_count(user),
        results=[_serialize(delivery) for delivery in batch],
        next=batch[-1].notification_id if has_more else None,
    )


@dataclass(frozen=True)
class Missed:
    """A sync answer: notifications in dispatch order, where the next sync starts, and the
    unread count read after the list (the page sets its badge from it: a hello's count,
    read before the socket joined its groups, can miss what was dispatched in between)."""

    notifications: list[SerializedNotification]
    cursor: int | None
    unread: int | None = None
    recalled: list[int] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)


def missed_since(user: AbstractBaseUser | Any, since: int | None) -> Missed:
    """Return what the user got after notification ``since``, in dispatch order (capped).

    The position is the user's Delivery row for ``since``: everything dispatched to them
    after it comes back, including scheduled notifications whose ids are older. With
    ``since`` None (a fresh page) it returns the last MAX_SYNC dispatched, oldest first. An
    unknown ``since`` (not the user's, or deleted) falls back to notification ids after it.

    The returned ``cursor`` stops before the first row younger than SYNC_SETTLE_SECONDS:
    Delivery ids are handed out at insert but become visible at commit, so with several
    dispatch transactions in flight a row may still appear *below* a fresh one. Young rows
    come back again on the next sync (the client de-duplicates) until they have settled.
    """
    settings = conf.get()
    limit = settings.MAX_SYNC
    # What the bell lists: archived and snoozed rows are not in it.
    rows = _user_rows(user).in_bell()
    if since is None:
        batch = list(rows.order_by("-id")[:limit])
        batch.reverse()
        # Nothing settled on a short first page: the next sync reads from the start.
        start: int | None = 0 if len(batch) < limit else None
    else:
        position = (
            Delivery.objects.filter(user=user, notification_id=since)
            .values_list("id", flat=True)
            .first()
        )
        after = rows.filter(id__gt=position) if position else rows.filter(notification_id__gt=since)
        batch = list(after.order_by("id")[:limit])
        start = since
    settled_before = timezone.now() - timedelta(seconds=settings.SYNC_SETTLE_SECONDS)
    cursor = start
    for delivery in batch:
        if delivery.created_at > settled_before:
            break
        cursor = delivery.notification_id
    return Missed([_serialize(delivery) for delivery in batch], cursor, unread_count(user))


def badge_state(user: AbstractBaseUser | Any) -> tuple[int, int | None]:
    """Return (unread count, last delivered id) for hello and pong, in one statement.

    Both come from one snapshot: a delivery committing meanwhile is in both or in neither,
    so the client never sees a count it cannot explain. (SQL built once: handshake_sql.)
    """
    return handshake_sql.badge_state(getattr(user, "pk", user))


abadge_state = db_async(badge_state)
amissed_since = db_async(missed_since)
anotification_page = db_async(notification_page)


# ---- the admin and the inbox page ---------------------------------------------------------

STATE_SCHEDULED = "scheduled"
STATE_PENDING = "pending"
STATE_DISPATCHED = "dispatched"
STATE_EXPIRED = "expired"
STATE_RECALLED = "recalled"
# Where a notification stands. "pending" is due but not yet dispatched: the listener has it
# next (or is down). A recall wins, then expiry: either shows nowhere any more.
NOTIFICATION_STATES = (
    STATE_SCHEDULED,
    STATE_PENDING,
    STATE_DISPATCHED,
    STATE_EXPIRED,
    STATE_RECALLED,
)


def notification_state(notification: Any, now: Any = None) -> str:
    """Return the state of a notification: scheduled, pending, dispatched or expired."""
    from django.utils import timezone

    now = now or timezone.now()
    if notification.recalled_at is not None:
        return STATE_RECALLED
    if notification.expired_by(now):
        return STATE_EXPIRED
    if notification.dispatched_at is not None:
        return STATE_DISPATCHED
    if notification.publish_at is not None and notification.publish_at > now:
        return STATE_SCHEDULED
    return STATE_PENDING


def notifications_in_state(queryset: Any, state: str, now: Any = None) -> Any:
    """Filter a Notification queryset to one state, by the rules of notification_state()."""
    from django.db.models import Q
    from django.utils import timezone

    now = now or timezone.now()
    if state == STATE_RECALLED:
        return queryset.filter(recalled_at__isnull=False)
    queryset = queryset.filter(recalled_at__isnull=True)
    expired = Q(expires_at__isnull=False, expires_at__lte=now)
    if state == STATE_EXPIRED:
        return queryset.filter(expired)
    live = queryset.exclude(expired)
    if state == STATE_DISPATCHED:
        return live.filter(dispatched_at__isnull=False)
    if state == STATE_SCHEDULED:
        return live.filter(dispatched_at__isnull=True, publish_at__gt=now)
    if state == STATE_PENDING:
        return live.filter(dispatched_at__isnull=True).filter(
            Q(publish_at__isnull=True) | Q(publish_at__lte=now)
        )
    raise ValueError(f"unknown state {state!r}")


def _delivery_count(*states: str) -> Any:
    from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
    from django.db.models.functions import Coalesce

    rows = Delivery.objects.filter(notification=OuterRef("pk"))
    if states:
        rows = rows.filter(state__in=states)
    counted = rows.order_by().values("notification").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def notifications_with_delivery_counts(queryset: Any) -> Any:
    """Annotate ``total_count``, ``delivered_count`` (delivered or read) and ``read_count``.

    Correlated subqueries rather than a join: a page of rows stays one query, and the
    changelist's COUNT(*) can drop them instead of grouping 10k deliveries per row.
    """
    return queryset.annotate(
        total_count=_delivery_count(),
        delivered_count=_delivery_count(DeliveryState.DELIVERED, DeliveryState.READ),
        read_count=_delivery_count(DeliveryState.READ),
    )


@dataclass(frozen=True)
class DeliveryStats:
    """How far one notification got: recipients, still pending, delivered (or read), read."""

    total: int
    pending: int
    delivered: int
    read: int


def notification_delivery_stats(notification_id: int) -> DeliveryStats:
    """Return the delivery counts of one notification in a single aggregate query."""
    from django.db.models import Count, Q

    counts = Delivery.objects.filter(notification_id=notification_id).aggregate(
        total=Count("pk"),
        pending=Count("pk", filter=Q(state=DeliveryState.PENDING)),
        delivered=Count("pk", filter=~Q(state=DeliveryState.PENDING)),
        read=Count("pk", filter=Q(state=DeliveryState.READ)),
    )
    return DeliveryStats(**counts)


@dataclass(frozen=True)
class InboxPage:
    """One page of the inbox, newest arrival first, with cursors both ways.

    ``older`` goes in ``before=`` and ``newer`` in ``after=`` (notification ids); None
    means no page that way. ``counts`` holds each view's size: unread, archived, snoozed.
    """

    unread: int
    deliveries: list[Delivery]
    older: int | None
    newer: int | None
    counts: dict[str, int]


def inbox_counts(user: AbstractBaseUser | Any) -> dict[str, int]:
    """Return how many of the user's live rows are unread, archived and snoozed: one query."""
    from django.db.models import Count, Q

    now = timezone.now()
    in_bell = Q(archived_at__isnull=True) & (
        Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)
    )
    return Delivery.objects.for_user(user).aggregate(
        unread=Count("pk", filter=in_bell & Q(state__in=UNREAD_STATES)),
        archived=Count("pk", filter=Q(archived_at__isnull=False)),
        snoozed=Count("pk", filter=Q(archived_at__isnull=True, snoozed_until__gt=now)),
    )


def inbox_page(
    user: AbstractBaseUser | Any,
    *,
    status: str | None = None,
    level: str | None = None,
    unread_only: bool = False,
    before: int | None = None,
    after: int | None = None,
    limit: int = 20,
) -> InboxPage:
    """Return a page of the user's live deliveries (notification loaded), newest first.

    Keyset pagination in dispatch (arrival) order: ``before`` walks to older rows,
    ``after`` back to newer ones; a page stays stable while new notifications arrive.
    ``unread_only`` is the old name of ``status="unread"``.
    """
    if unread_only and status is None:
        status = "unread"
    rows = rows_in_status(_user_rows(user), status, level)
    if after is not None and before is None:
        batch = list(_newer_than(rows, user, after).order_by("id")[: limit + 1])
        has_newer = len(batch) > limit
        batch = batch[:limit][::-1]
        has_older = bool(batch) and rows.filter(id__lt=batch[-1].id).exists()
    else:
        older_rows = rows if before is None else _older_than(rows, user, before)
        batch = list(older_rows.order_by("-id")[: limit + 1])
        has_older = len(batch) > limit
        batch = batch[:limit]
        has_newer = before is not None and bool(batch) and rows.filter(id__gt=batch[0].id).exists()
    counts = inbox_counts(user)
    return InboxPage(
        unread=counts["unread"],
        deliveries=batch,
        older=batch[-1].notification_id if has_older else None,
        newer=batch[0].notification_id if has_newer else None,
        counts=counts,
    )
