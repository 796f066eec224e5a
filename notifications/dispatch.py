"""Handle one announced notification: claim it, resolve its audience, record, fan out.

It knows the database and the channel layer, nothing of Redis pub/sub: the listener feeds it
ids, and so can a test or a one-off command.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import connections, transaction
from django.db.models import Min
from django.utils import timezone

from notifications import conf, deadlines
from notifications.asyncdb import database_unavailable
from notifications.audience import audience_queryset
from notifications.events import (
    GROUP_ALL,
    GROUP_STAFF,
    SerializedNotification,
    UserId,
    auth_group_group,
    expired_frame,
    layer_created_event,
    layer_logout_event,
    layer_membership_event,
    layer_read_event,
    layer_state_event,
    serialize_notification,
    session_group,
    triage_frame,
    user_group,
)
from notifications.models import Audience, Delivery, Notification
from notifications.preferences import muted_count, muted_pairs, recipients
from notifications.services import (
    ReadResult,
    Returned,
    TriageResult,
    audience_chunks,
    deliveries_record_audience,
    deliveries_record_chunk,
    deliveries_record_pairs,
)

logger = logging.getLogger(__name__)

# The most users one recording transaction covers on SQLite (see record_broadcast).
SQLITE_CHUNK_SIZE = 2000


@dataclass
class Dispatched:
    """A notification this process claimed and recorded, ready to push."""

    id: int
    notification: SerializedNotification
    groups: list[str]
    recipient_count: int
    expired: bool = False
    elapsed_ms: float = 0.0
    audience: str = ""


def fan_out_groups(notification: Notification) -> list[str]:
    """Return the layer groups to send to: one per audience, not one per user."""
    if notification.audience == Audience.USER:
        return [user_group(notification.recipient_id)]
    if notification.audience == Audience.GROUP:
        return [auth_group_group(notification.group_id)]
    if notification.audience == Audience.STAFF:
        return [GROUP_STAFF]
    return [GROUP_ALL]


def dispatch_notification(notification_id: int, now: datetime | None = None) -> Dispatched | None:
    """Claim the notification and write its Delivery rows, in one transaction.

    Returns None when there is nothing for this process to do: the row is gone, already
    dispatched (by this or another listener), or scheduled for later. The claim is a
    conditional UPDATE, the first statement of the transaction: on PostgreSQL a second
    listener waits on the row lock and then finds it dispatched; on SQLite the write lock
    serialises them. A crash before commit rolls the claim back, and the sweep retries.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    chunk_size = conf.get().CHUNK_SIZE
    with transaction.atomic():
        claimed = Notification.objects.due(now).filter(pk=notification_id).update(dispatched_at=now)
        if not claimed:
            return None
        notification = Notification.objects.get(pk=notification_id)
        count = muted = 0
        expired = notification.expired_by(now)
        if not expired:
            audience = audience_queryset(notification)
            count = deliveries_record_audience(
                notification.pk, recipients(notification, audience), chunk_size, now
            )
            muted = muted_count(notification, audience)
        Notification.objects.filter(pk=notification.pk).update(
            recipient_count=count, recorded_at=now, muted_count=muted
        )
    return Dispatched(
        id=notification.pk,
        notification=serialize_notification(notification),
        groups=[] if expired else fan_out_groups(notification),
        recipient_count=count,
        expired=expired,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        audience=notification.audience,
    )


def dispatch_many(notification_ids: list[int]) -> list[Dispatched]:
    """Dispatch each id in turn; one failure is logged and does not stop the others."""
    results: list[Dispatched] = []
    for notification_id in dict.fromkeys(notification_ids):
        try:
            result = dispatch_notification(notification_id)
        except Exception as exc:
            if database_unavailable(exc):
                # The others would fail the same way, each with its own traceback: the
                # caller backs off, and a sweep dispatches them all once it is back.
                raise
            logger.exception(
                "Dispatching notification %s failed; the sweep will retry it", notification_id
            )
            continue
        if result is not None:
            results.append(result)
    return results


def dispatch_batch(notification_ids: list[int], now: datetime | None = None) -> list[Dispatched]:
    """Dispatch a batch: one-user notifications together, the others one by one.

    Under load most announcements are for one user each; claiming them in one transaction
    (one locking SELECT, one UPDATE, one bulk INSERT) instead of one transaction apiece is
    what lets one listener keep up with thousands a second. Broadcasts keep their own
    transactions, so a big one holds no lock over the small ones.
    """
    results, broadcasts = dispatch_one_user_batch(notification_ids, now)
    return results + dispatch_many(broadcasts)


def dispatch_one_user_batch(
    notification_ids: list[int], now: datetime | None = None
) -> tuple[list[Dispatched], list[int]]:
    """Dispatch the one-user notifications among ``ids``; return them and the other ids.

    The listener hands the others (group, staff, all) to a worker of their own, so persisting
    a broadcast to 100,000 users never holds up the one-user notifications behind it.

    When the database itself is unavailable (``database_unavailable``) the error is raised
    as it came, with nothing retried: the listener backs off and sweeps once it is back.
    A failure of the batch for any other reason (one bad row) is retried one id at a time,
    and that retry runs no query of its own first, so it cannot fail inside the ``except``.
    """
    ids = list(dict.fromkeys(notification_ids))
    if not ids:
        return [], []
    now = now or timezone.now()
    try:
        results = _dispatch_single_user_batch(ids, now)
    except Exception as exc:
        if database_unavailable(exc):
            raise
        logger.exception("Batch dispatch of %d failed; retrying one by one", len(ids))
        results = _dispatch_single_users_one_by_one(ids, now)
    done = {result.id for result in results}
    # Whatever was not a due one-user notification: broadcasts, and ids that are gone,
    # dispatched already or held by another listener, which claim_broadcast turns down
    # with one indexed UPDATE. (No query up front to tell them apart: that was a fifth of
    # the batch's time for the usual batch of one.)
    return results, [i for i in ids if i not in done]


def _dispatch_single_users_one_by_one(ids: list[int], now: datetime) -> list[Dispatched]:
    """Dispatch each one-user notification among ``ids`` in a transaction of its own.

    One bad row then costs only itself (logged; the sweep retries it); an unavailable
    database stops the round at once, as in ``dispatch_many``.
    """
    results: list[Dispatched] = []
    for notification_id in ids:
        try:
            results += _dispatch_single_user_batch([notification_id], now)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            logger.exception(
                "Dispatching notification %s failed; the sweep will retry it", notification_id
            )
    return results


def _dispatch_single_user_batch(ids: list[int], now: datetime) -> list[Dispatched]:
    started = time.perf_counter()
    with transaction.atomic():
        # PostgreSQL: lock what we claim and skip rows another listener holds (it will
        # dispatch them, or roll back and leave them to a sweep). SQLite ignores the clause:
        # its IMMEDIATE transactions already serialise writers.
        # The recipient comes along (is_active) in the same query; only our rows are locked.
        rows = list(
            Notification.objects.due(now)
            .filter(pk__in=ids, audience=Audience.USER)
            .select_related("recipient")
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("pk")
        )
        if not rows:
            return []
        active = [
            row
            for row in rows
            if row.recipient is not None and row.recipient.is_active and not row.expired_by(now)
        ]
        # One query for the batch: the recipients who muted the row's category.
        muted = muted_pairs((row, row.recipient_id) for row in active)
        reached = [row for row in active if (row.pk, row.recipient_id) not in muted]
        deliveries_record_pairs([(row.pk, row.recipient_id) for row in reached])
        reached_pks = {row.pk for row in reached}
        muted_pks = {pk for pk, _ in muted}
        if reached_pks:
            Notification.objects.filter(pk__in=reached_pks).update(
                dispatched_at=now, recorded_at=now, recipient_count=1
            )
        if muted_pks:
            Notification.objects.filter(pk__in=muted_pks).update(
                dispatched_at=now, recorded_at=now, muted_count=1
            )
        if len(reached_pks) + len(muted_pks) < len(rows):
            Notification.objects.filter(
                pk__in=[row.pk for row in rows if row.pk not in reached_pks | muted_pks]
            ).update(dispatched_at=now, recorded_at=now)
    elapsed_ms = (time.perf_counter() - started) * 1000 / len(rows)
    for row in rows:
        row.dispatched_at = now  # as saved above: the frames show the arrival time
    return [
        Dispatched(
            id=row.pk,
            notification=serialize_notification(row),
            groups=[user_group(row.recipient_id)] if row.pk in reached_pks else [],
            recipient_count=1 if row.pk in reached_pks else 0,
            expired=row.expired_by(now),
            elapsed_ms=elapsed_ms,
            audience=row.audience,
        )
        for row in rows
    ]


def claim_broadcast(notification_id: int, now: datetime | None = None) -> Dispatched | None:
    """Claim a group, staff or all notification so it can be pushed before it is recorded.

    One short transaction: the conditional UPDATE that makes this process the only one to
    push it. Its Delivery rows are written next, by ``record_broadcast``: persisting 10,000
    rows takes longer than pushing to 5,000 sockets, and no socket should wait for the
    rows of the others. An expired notification is claimed, recorded empty and not pushed.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    with transaction.atomic():
        claimed = (
            Notification.objects.due(now)
            .filter(pk=notification_id)
            .exclude(audience=Audience.USER)
            .update(dispatched_at=now)
        )
        if not claimed:
            return None
        notification = Notification.objects.get(pk=notification_id)
        expired = notification.expired_by(now)
        if expired:
            Notification.objects.filter(pk=notification_id).update(recorded_at=now)
    return Dispatched(
        id=notification.pk,
        notification=serialize_notification(notification),
        groups=[] if expired else fan_out_groups(notification),
        recipient_count=0,
        expired=expired,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        audience=notification.audience,
    )


def record_broadcast(notification_id: int, now: datetime | None = None) -> int | None:
    """Write the Delivery rows of a claimed notification; return its recipient count.

    One transaction per chunk of the audience (keyset over its real user ids: N users are
    ceil(N / CHUNK_SIZE) chunks whatever the ids), then one that counts the rows and sets
    ``recorded_at``. Between two chunks the recorder rests as long as the last one took: a
    100,000-user broadcast then takes about twice as long to record, and the one-user
    notifications beside it keep their latency (on SQLite it would otherwise hold the
    database's write lock, and every save of the app, for its whole length; on a 2-core
    PostgreSQL box it took a core from them). Each step first locks the notification row,
    skipping it if another listener holds it.

    Returns None when there is nothing (more) to record: not claimed yet, already recorded,
    gone, or being recorded by another listener. Idempotent: rows that exist (an ack or a
    read in the window before recording writes its own, or a run that died halfway) are
    left alone and counted. A crash leaves ``recorded_at`` empty, and the sweep records the
    rest.
    """
    now = now or timezone.now()
    notification = _lock_unrecorded(notification_id, lock=False)
    if notification is None:
        return None
    expired = notification.expired_by(now)
    muted = 0
    if not expired:
        audience = audience_queryset(notification)
        users = recipients(notification, audience)
        chunk_size = conf.get().CHUNK_SIZE
        if connections[Delivery.objects.db].vendor == "sqlite":
            # A writer waiting for SQLite's lock sleeps in growing steps (1, 2, 5, 10, 15,
            # 20, 25 ms...): short chunks keep its wait, and the app's saves, short.
            chunk_size = min(chunk_size, SQLITE_CHUNK_SIZE)
        rest = 0.0
        # Each chunk's boundary is looked up outside its transaction (audience_chunks is
        # lazy): the lock is held for the INSERT alone.
        for chunk in audience_chunks(users, chunk_size):
            time.sleep(rest)
            began = time.perf_counter()
            with transaction.atomic():
                if _lock_unrecorded(notification_id) is None:
                    return None
                deliveries_record_chunk(notification_id, users, chunk, now)
            rest = time.perf_counter() - began
        muted = muted_count(notification, audience)
    with transaction.atomic():
        if _lock_unrecorded(notification_id) is None:
            return None
        # Counted after every insert: a row an ack wrote meanwhile either made our INSERT
        # wait for it (PostgreSQL) or came first (SQLite); either way it is seen here.
        count = 0 if expired else Delivery.objects.filter(notification_id=notification_id).count()
        Notification.objects.filter(pk=notification_id).update(
            recipient_count=count, recorded_at=now, muted_count=muted
        )
    return count


def _lock_unrecorded(notification_id: int, lock: bool = True) -> Notification | None:
    """Return the notification if it still waits to be recorded (with ``lock``, locked for
    the transaction); None if it is recorded, gone, or locked by another recorder."""
    rows = Notification.objects.unrecorded().filter(pk=notification_id)
    if lock:
        # NO KEY UPDATE: it excludes another recorder and a deletion (FOR UPDATE), not the
        # syncs and acks writing their in-flight rows (FOR KEY SHARE, see services), which
        # would otherwise make the recorder skip the row and leave it to the sweep.
        rows = rows.select_for_update(skip_locked=True, no_key=True)
    return rows.first()


def unrecorded_notification_ids(limit: int = 500) -> list[int]:
    """Return dispatched notifications whose rows are not written yet, oldest first."""
    return list(
        Notification.objects.unrecorded().order_by("id").values_list("id", flat=True)[:limit]
    )


def due_notification_ids(limit: int = 500) -> list[int]:
    """Return committed notifications that are due and not yet dispatched, oldest first."""
    return list(Notification.objects.due().order_by("id").values_list("id", flat=True)[:limit])


def next_expiry_after(moment: datetime) -> datetime | None:
    """Return the first expiry of a dispatched notification after ``moment``, or None."""
    return Notification.objects.filter(
        dispatched_at__isnull=False, expires_at__gt=moment
    ).aggregate(next=Min("expires_at"))["next"]


def expired_between(start: datetime, end: datetime, limit: int = 500) -> list[int]:
    """Return dispatched notifications whose expiry lies in ``(start, end]``, in that order."""
    return list(
        Notification.objects.filter(
            dispatched_at__isnull=False, expires_at__gt=start, expires_at__lte=end
        )
        .order_by("expires_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def expired_by_group(ids: Iterable[int]) -> dict[str, list[int]]:
    """Group notification ids by the layer groups their audience was pushed to."""
    groups: dict[str, list[int]] = {}
    rows = Notification.objects.filter(pk__in=list(ids), dispatched_at__isnull=False).only(
        "pk", "audience", "recipient_id", "group_id"
    )
    for notification in rows.order_by("pk"):
        for group in fan_out_groups(notification):
            groups.setdefault(group, []).append(notification.pk)
    return groups


async def apush_expired(
    by_group: dict[str, list[int]], layer: BaseChannelLayer | None = None
) -> None:
    """Tell every open bell of each audience that these notifications expired.

    One layer message per audience group, as for the push itself; bounded per batch
    (``deadlines.group_send_all``). A lost one is put right by the bell's next pong (its
    count) and its next reload.
    """
    if not by_group:
        return
    layer = layer or get_channel_layer()
    await deadlines.group_send_all(
        layer,
        [(group, layer_state_event(expired_frame(ids), group)) for group, ids in by_group.items()],
    )


def next_scheduled_at() -> datetime | None:
    """Return when the next scheduled notification falls due, or None."""
    return (
        Notification.objects.undispatched()
        .filter(publish_at__gt=timezone.now())
        .aggregate(next=Min("publish_at"))["next"]
    )


async def afan_out(dispatched: Dispatched, layer: BaseChannelLayer | None = None) -> None:
    """Push a dispatched notification to its groups over the channel layer."""
    layer = layer or get_channel_layer()
    for group in dispatched.groups:
        await layer.group_send(group, layer_created_event(dispatched.notification, group))


async def apush_read(
    user_id: UserId,
    result: ReadResult,
    layer: BaseChannelLayer | None = None,
) -> None:
    """Tell every socket of the user which ids are now read, so other tabs follow.

    Raises ``TimeoutError`` after ``deadlines.PUSH_SECONDS`` of a silent Redis: the read
    is recorded, and the other tabs catch up at their next pong.
    """
    if not result.ids:
        return
    layer = layer or get_channel_layer()
    group = user_group(user_id)
    async with asyncio.timeout(deadlines.PUSH_SECONDS):
        await layer.group_send(group, layer_read_event(result.ids, result.unread, group))


async def apush_triage(
    user_id: UserId,
    result: TriageResult,
    layer: BaseChannelLayer | None = None,
) -> None:
    """Tell every socket of the user what a triage verb changed (``archived``, ``snoozed``…).

    Raises ``TimeoutError`` after ``deadlines.PUSH_SECONDS`` of a silent Redis: the change
    is recorded, and the other tabs catch up at their next pong (its unread count) or sync.
    """
    if not result.ids:
        return
    layer = layer or get_channel_layer()
    group = user_group(user_id)
    frame = triage_frame(result.kind, result.ids, result.unread, result.until)
    async with asyncio.timeout(deadlines.PUSH_SECONDS):
        await layer.group_send(group, layer_state_event(frame, group))


async def apush_returned(returned: list[Returned], layer: BaseChannelLayer | None = None) -> None:
    """Push each snooze that came back to its user, as a new notification (toast and all).

    Bounded per batch (``deadlines.group_send_all``); a lost push is found by the bell's
    next pong, whose unread count has grown.
    """
    if not returned:
        return
    layer = layer or get_channel_layer()
    sends = []
    for item in returned:
        group = user_group(item.user_id)
        sends.append((group, layer_created_event(serialize_notification(item.notification), group)))
    await deadlines.group_send_all(layer, sends)


async def apush_membership_changed(user_id: UserId, layer: BaseChannelLayer | None = None) -> None:
    """Ask the user's sockets to rejoin their groups (staff flag or Group membership changed).

    Raises ``TimeoutError`` after ``deadlines.PUSH_SECONDS`` of a silent Redis; the
    sockets then move at their next ping, which reads the user's groups again.
    """
    layer = layer or get_channel_layer()
    group = user_group(user_id)
    async with asyncio.timeout(deadlines.PUSH_SECONDS):
        await layer.group_send(group, layer_membership_event(group))


async def apush_memberships_changed(
    user_ids: Iterable[UserId], layer: BaseChannelLayer | None = None
) -> None:
    """``apush_membership_changed`` for many users: concurrent batches, each under a deadline.

    A group's save can change the groups of thousands of users; one push after another
    would make the request pay a deadline per user when Redis is silent.
    """
    layer = layer or get_channel_layer()
    groups = [user_group(user_id) for user_id in dict.fromkeys(user_ids)]
    await deadlines.group_send_all(
        layer, [(group, layer_membership_event(group)) for group in groups]
    )


async def apush_logout(session_key: str, layer: BaseChannelLayer | None = None) -> None:
    """Close every socket opened with this browser session.

    Best effort: raises ``TimeoutError`` after ``deadlines.PUSH_SECONDS`` of a silent Redis.
    The logout itself does not depend on it (Django deletes the session), and a socket of a
    deleted session closes at its next ping (``NotificationConsumer.on_ping``).
    """
    layer = layer or get_channel_layer()
    group = session_group(session_key)
    async with asyncio.timeout(deadlines.PUSH_SECONDS):
        await layer.group_send(group, layer_logout_event(group))


# The request paths' twins. Each async call carries its deadline, so none of these can hang
# a request thread on a silent Redis.
push_read = async_to_sync(apush_read)
push_triage = async_to_sync(apush_triage)
push_logout = async_to_sync(apush_logout)
push_membership_changed = async_to_sync(apush_membership_changed)
push_memberships_changed = async_to_sync(apush_memberships_changed)
