"""Every read: unread counts, a user's page, what a socket missed (with async twins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from notifications import conf, handshake_sql
from notifications.asyncdb import db_async
from notifications.events import (
    ListedNotification,
    SerializedNotification,
    serialize_notification,
)
from notifications.models import UNREAD_STATES, Delivery, DeliveryState


def _user_rows(user: AbstractBaseUser | Any) -> Any:
    return Delivery.objects.for_user(user).select_related("notification")


def unread_count(user: AbstractBaseUser | Any) -> int:
    """Return the badge: unread rows in the bell, a group (one ``group_key``) counted once.

    One aggregate over the same rows as before: the ungrouped ones, plus the distinct keys
    of the grouped ones (every unread row of a key is one item: their bucket, ``read_at``,
    is NULL for all of them).
    """
    return handshake_sql.unread_count(getattr(user, "pk", user))


def unread_count_by_orm(user: AbstractBaseUser | Any) -> int:
    """``unread_count`` through the ORM: the tests' reference for the SQL built once."""
    counts = Delivery.objects.for_user(user).unread().aggregate(**_grouped_unread_terms())
    return _grouped_unread_total(counts)


def _grouped_unread_terms(condition: Any = None) -> dict[str, Any]:
    """The two aggregates whose sum is a grouped unread count (``condition``: the unread
    rows, when the aggregate also counts other views)."""
    from django.db.models import Count, Q

    ungrouped = Q(notification__group_key="")
    grouped = ~Q(notification__group_key="")
    if condition is not None:
        ungrouped, grouped = condition & ungrouped, condition & grouped
    return {
        "_ungrouped": Count("pk", filter=ungrouped),
        "_groups": Count("notification__group_key", filter=grouped, distinct=True),
    }


def _grouped_unread_total(counts: dict[str, Any]) -> int:
    return int(counts.pop("_ungrouped") or 0) + int(counts.pop("_groups") or 0)


def _serialize(delivery: Delivery) -> SerializedNotification:
    return serialize_notification(
        delivery.notification,
        read=delivery.state == DeliveryState.READ,
        archived=delivery.archived_at is not None,
        snoozed_until=delivery.snoozed_until,
    )


def _serialize_head(delivery: Delivery) -> ListedNotification:
    """A list entry: the notification plus its item's size and actors (annotate_groups)."""
    return {**_serialize(delivery), **group_fields(delivery)}  # type: ignore[typeddict-item]


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


# ---- grouping: one item per group_key and bucket ------------------------------------------
# A group item is a user's rows in one view whose notifications share a non-empty group_key
# and that changed together: the same *bucket* (NULL equal to NULL). Unread rows all have
# read_at NULL, so every unread row of a key is one item; rows read (archived, snoozed) as
# one share one timestamp, so they stay one item afterwards. Lists show the newest row of
# an item (its head) with the item's size and actors; the badge counts an item once.

# How many actor names a head carries ("Ana, Bo and 11 others").
GROUP_ACTORS_SHOWN = 3


def bucket_field(status: str | None) -> str:
    """Return the Delivery column whose equal values make one item in the view ``status``."""
    if status is None or status == "unread":
        return "read_at"
    if status == "archived":
        return "archived_at"
    if status == "snoozed":
        return "snoozed_until"
    raise ValueError(f"unknown status {status!r}")


def _view_rows(user: Any, status: str | None, level: str | None = None) -> Any:
    """The user's live rows in one view (no notification loaded): a subquery's base."""
    return rows_in_status(Delivery.objects.for_user(user), status, level)


def _head_ids(user: Any, status: str | None, level: str | None) -> Any:
    """Subquery: the Delivery id of each grouped item's head (its newest row) in a view.

    Computed once per statement (GROUP BY key and bucket: NULLs group together), not once
    per row: a correlated "no newer row of my item" made PostgreSQL check every row of the
    view before it could sort and cut the page (53 s for 20,000 rows). The outer query
    then walks the user's dispatch index as before and stops at the page's end.
    """
    from django.db.models import Max

    return (
        _view_rows(user, status, level)
        .exclude(notification__group_key="")
        .order_by()
        .values("notification__group_key", bucket_field(status))
        .annotate(head=Max("id"))
        .values("head")
    )


def collapse(rows: Any, user: Any, status: str | None, level: str | None = None) -> Any:
    """Keep the rows that head their item: ungrouped ones, and the newest of each item.

    A filter, not a GROUP BY of the page: keyset pagination (``before``/``after``) keeps
    working over the heads.
    """
    from django.db.models import Q

    return rows.filter(Q(notification__group_key="") | Q(id__in=_head_ids(user, status, level)))


def item_filter(field: str, key: str, bucket: Any) -> Any:
    """Q for the rows of one item: its key, and its bucket in ``field`` (NULL is a bucket)."""
    from django.db.models import Q

    return Q(notification__group_key=key) & (
        Q(**{f"{field}__isnull": True}) if bucket is None else Q(**{field: bucket})
    )


def annotate_groups(
    deliveries: list[Delivery], user: Any, status: str | None, level: str | None = None
) -> list[Delivery]:
    """Give each head ``group_count``, ``group_actors`` and ``group_actor_count``.

    One query for the whole page, whatever its size: per key, bucket and actor name, how
    many rows and the newest one (GROUP BY), summed up here per item. Ungrouped rows are
    items of one and cost nothing.
    """
    from django.db.models import Count, Max

    field = bucket_field(status)
    heads = [d for d in as_single_items(deliveries) if d.notification.group_key]
    if not heads:
        return deliveries
    items = {(head.notification.group_key, getattr(head, field)) for head in heads}
    # By key, then the buckets wanted are picked here: a list of (key, bucket) pairs made
    # an OR the database tried on every row of the view. Nothing newer than the page's
    # newest head: a row arriving meanwhile is not counted in a head listed without it.
    rows = (
        _view_rows(user, status, level)
        .filter(
            notification__group_key__in={key for key, _ in items},
            id__lte=max(head.id for head in heads),
        )
        .order_by()
        .values_list("notification__group_key", field, "notification__actor_name")
        .annotate(n=Count("pk"), newest=Max("pk"))
    )
    sizes: dict[tuple[str, Any], int] = {}
    names: dict[tuple[str, Any], list[tuple[int, str]]] = {}
    for key, bucket, name, n, newest in rows:
        if (key, bucket) not in items:
            continue
        sizes[(key, bucket)] = sizes.get((key, bucket), 0) + n
        if name:
            names.setdefault((key, bucket), []).append((newest, name))
    for head in heads:
        item = (head.notification.group_key, getattr(head, field))
        actors = [name for _, name in sorted(names.get(item, []), reverse=True)]
        head.group_count = max(sizes.get(item, 1), 1)  # type: ignore[attr-defined]
        head.group_actors = actors[:GROUP_ACTORS_SHOWN]  # type: ignore[attr-defined]
        head.group_actor_count = len(actors)  # type: ignore[attr-defined]
    return deliveries


def as_single_items(deliveries: list[Delivery]) -> list[Delivery]:
    """Give each row the group attributes of an item of one (itself, its own actor)."""
    for delivery in deliveries:
        name = delivery.notification.actor_name
        delivery.group_count = 1  # type: ignore[attr-defined]
        delivery.group_actors = [name] if name else []  # type: ignore[attr-defined]
        delivery.group_actor_count = 1 if name else 0  # type: ignore[attr-defined]
    return deliveries


def group_fields(delivery: Delivery) -> dict[str, Any]:
    """The three keys a list entry adds (an unannotated row is an item of one)."""
    name = delivery.notification.actor_name
    return {
        "group_count": getattr(delivery, "group_count", 1),
        "group_actors": list(getattr(delivery, "group_actors", [name] if name else [])),
        "group_actor_count": getattr(delivery, "group_actor_count", 1 if name else 0),
    }


def item_rows(
    user: Any,
    group_key: str,
    *,
    status: str | None = None,
    level: str | None = None,
    bucket_of: int | None = None,
) -> Any:
    """The user's rows (notification loaded) of one item in a view, not collapsed.

    The item is the key's rows in the bucket of the user's row of notification
    ``bucket_of``; without it, the unread bucket (NULL ``read_at``) of the default and
    unread views. A ``bucket_of`` that is not the user's, not in the view or of another
    key gives no rows (nothing is revealed). ValueError for archived/snoozed without
    ``bucket_of`` (no bucket is implied there).
    """
    field = bucket_field(status)
    rows = rows_in_status(_user_rows(user), status, level)
    if not group_key:
        return rows.none()
    if bucket_of is None:
        if field != "read_at":
            raise ValueError("bucket_of is needed with status archived or snoozed")
        return rows.filter(item_filter(field, group_key, None))
    anchor = (
        _view_rows(user, status, level)
        .filter(notification_id=bucket_of, notification__group_key=group_key)
        .values_list(field, flat=True)
    )
    found = list(anchor[:1])
    if not found:
        return rows.none()
    return rows.filter(item_filter(field, group_key, found[0]))


def group_members(
    user: AbstractBaseUser | Any, notification_id: int, status: str | None = None
) -> list[Delivery]:
    """Return every row (newest first) of the item the user's row of ``notification_id``
    belongs to in view ``status``; an ungrouped row is its own item; not the user's: []."""
    row = (
        _view_rows(user, status)
        .filter(notification_id=notification_id)
        .values_list("notification__group_key", flat=True)
        .first()
    )
    if row is None:
        return []
    if not row:
        return list(_user_rows(user).filter(notification_id=notification_id))
    members = item_rows(user, row, status=status, bucket_of=notification_id)
    return list(members.order_by("-id"))


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
    results: list[ListedNotification]
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
    rows = collapse(rows_in_status(_user_rows(user), status, level), user, status, level)
    page = _page_of(rows, user, before, limit)
    annotate_groups(page.deliveries, user, status, level)
    return _answer(user, page)


@dataclass(frozen=True)
class _Slice:
    deliveries: list[Delivery]
    next: int | None


def _page_of(rows: Any, user: Any, before: int | None, limit: int) -> _Slice:
    """Take one keyset page of ``rows``, newest first; ``next`` is the next ``before``."""
    limit = max(1, min(limit, conf.get().MAX_SYNC))
    if before is not None:
        rows = _older_than(rows, user, before)
    batch = list(rows.order_by("-id")[: limit + 1])
    has_more = len(batch) > limit
    batch = batch[:limit]
    return _Slice(batch, batch[-1].notification_id if has_more else None)


def _answer(user: Any, page: _Slice) -> Page:
    """The API's answer for one page: its entries and the user's unread count."""
    return Page(
        unread=unread_count(user),
        results=[_serialize_head(delivery) for delivery in page.deliveries],
        next=page.next,
    )


def group_page(
    user: AbstractBaseUser | Any,
    group_key: str,
    *,
    status: str | None = None,
    level: str | None = None,
    bucket_of: int | None = None,
    before: int | None = None,
    limit: int = 20,
) -> Page:
    """Return a page of one item's rows (the API's ``group=``), newest first, not collapsed.

    The entries carry the group keys of an item of one each: they are its members, shown
    under a head that has the item's own. ValueError as ``item_rows``.
    """
    rows = item_rows(user, group_key, status=status, level=level, bucket_of=bucket_of)
    return _answer(user, _page_of(rows, user, before, limit))


@dataclass(frozen=True)
class Missed:
    """A sync answer: notifications in dispatch order, where the next sync starts, and the
    unread count read after the list (the page sets its badge from it: a hello's count,
    read before the socket joined its groups, can miss what was dispatched in between)."""

    notifications: list[ListedNotification]
    cursor: int | None
    unread: int | None = None
    recalled: list[int] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)
    # The ``since`` of the next page when this one was capped (MAX_SYNC rows after a
    # ``since``): its last row, listed or not. Clients cannot tell from the list, whose
    # grouped members are left out (200 rows of one key list one head, or none).
    next: int | None = None


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
    # The cursor went over every row; the list shows heads only. A member left out has a
    # newer row of its item, listed now or in a later sync.
    heads = annotate_groups(_heads_among(batch, user), user, None)
    capped = since is not None and len(batch) >= limit
    return Missed(
        [_serialize_head(delivery) for delivery in heads],
        cursor,
        unread_count(user),
        next=batch[-1].notification_id if capped else None,
    )


def _heads_among(batch: list[Delivery], user: Any) -> list[Delivery]:
    """Keep the rows of a bell batch that head their item (one query, grouped rows only)."""
    grouped = [d.id for d in batch if d.notification.group_key]
    if not grouped:
        return batch
    heads = Delivery.objects.filter(id__in=grouped).filter(id__in=_head_ids(user, None, None))
    shown = set(heads.values_list("id", flat=True))
    return [d for d in batch if not d.notification.group_key or d.id in shown]


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
    """Return how many of the user's live rows are unread (a group once), archived and
    snoozed: one query."""
    from django.db.models import Count, Q

    now = timezone.now()
    in_bell = Q(archived_at__isnull=True) & (
        Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)
    )
    counts = Delivery.objects.for_user(user).aggregate(
        **_grouped_unread_terms(in_bell & Q(state__in=UNREAD_STATES)),
        archived=Count("pk", filter=Q(archived_at__isnull=False)),
        snoozed=Count("pk", filter=Q(archived_at__isnull=True, snoozed_until__gt=now)),
    )
    # A group counts once in "unread", as in the badge.
    return {"unread": _grouped_unread_total(counts), **counts}


def inbox_page(
    user: AbstractBaseUser | Any,
    *,
    status: str | None = None,
    level: str | None = None,
    unread_only: bool = False,
    before: int | None = None,
    after: int | None = None,
    limit: int = 20,
    group: str | None = None,
    bucket_of: int | None = None,
) -> InboxPage:
    """Return a page of the user's live deliveries (notification loaded), newest first.

    Keyset pagination in dispatch (arrival) order: ``before`` walks to older rows,
    ``after`` back to newer ones; a page stays stable while new notifications arrive.
    ``unread_only`` is the old name of ``status="unread"``.

    Grouped rows are collapsed to their item's head, which gets ``group_count``,
    ``group_actors`` and ``group_actor_count`` (every row has them; 1, its own actor, for
    an ungrouped one). With ``group`` (and ``bucket_of``) the page is that one item's rows,
    not collapsed (see ``item_rows``; ValueError there).
    """
    if unread_only and status is None:
        status = "unread"
    if group is not None:
        rows = item_rows(user, group, status=status, level=level, bucket_of=bucket_of)
    else:
        rows = collapse(rows_in_status(_user_rows(user), status, level), user, status, level)
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
    if group is None:
        annotate_groups(batch, user, status, level)
    else:
        as_single_items(batch)  # members, each shown on its own under the head
    counts = inbox_counts(user)
    return InboxPage(
        unread=counts["unread"],
        deliveries=batch,
        older=batch[-1].notification_id if has_older else None,
        newer=batch[0].notification_id if has_newer else None,
        counts=counts,
    )
