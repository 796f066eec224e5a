"""Every write: create notifications, record deliveries, mark them delivered or read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from notifications import categories, conf
from notifications.asyncdb import db_async
from notifications.audience import audience_queryset
from notifications.events import UserId
from notifications.models import (
    UNREAD_STATES,
    Audience,
    Delivery,
    DeliveryState,
    Level,
    Notification,
)
from notifications.preferences import recipients
from notifications.selectors import bucket_field, item_filter, rows_in_status, unread_count
from notifications.write_priority import foreground, give_way

# Users per statement of the batched writes (acks, seen marks): well inside SQLite's limit
# of bound variables.
USERS_PER_STATEMENT = 500
# Notifications per statement of those writes: each is one OR term, and SQLite parses an OR
# chain as a tree as deep as its terms (its expression depth limit is 1,000).
NOTIFICATIONS_PER_STATEMENT = 100


def _marks_statements(marks: dict[int, list[UserId]]) -> Iterator[Q]:
    """Split {notification id: users} into the filters of a few statements, in notification
    order: one-user notifications (an ack or seen mark per push) share a statement instead
    of one UPDATE, and on SQLite one commit of the one write lock, each."""
    terms: list[Q] = []
    users_in = 0
    for notification_id, users in sorted(marks.items()):
        for start in range(0, len(users), USERS_PER_STATEMENT):
            part = users[start : start + USERS_PER_STATEMENT]
            if terms and (
                len(terms) >= NOTIFICATIONS_PER_STATEMENT
                or users_in + len(part) > USERS_PER_STATEMENT
            ):
                yield _any_of(terms)
                terms, users_in = [], 0
            terms.append(Q(notification_id=notification_id, user_id__in=part))
            users_in += len(part)
    if terms:
        yield _any_of(terms)


def _any_of(terms: list[Q]) -> Q:
    combined = terms[0]
    for term in terms[1:]:
        combined |= term
    return combined


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
    category: str | None = None,
    critical: bool = False,
    group_key: str = "",
    actor: Any = None,
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
        category=category or categories.default_slug(),
        critical=bool(critical),
        group_key=(group_key or "").strip(),
        actor=actor,
        actor_name=actor_display_name(actor),
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
    category: str | None = None,
    critical: bool = False,
    group_key: str = "",
    actor: Any = None,
) -> Notification:
    """Send a notification to one user (``category``: a declared slug; ``critical`` ignores
    the user's mutes and quiet hours)."""
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
        category=category,
        critical=critical,
        group_key=group_key,
        actor=actor,
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
    category: str | None = None,
    critical: bool = False,
    group_key: str = "",
    actor: Any = None,
) -> Notification:
    """Send a notification to everyone, all staff, or the members of ``group``; users who
    muted ``category`` get no row and no push (unless ``critical``)."""
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
        category=category,
        critical=critical,
        group_key=group_key,
        actor=actor,
    )


def actor_display_name(actor: Any) -> str:
    """The name lists show for whoever caused a notification (full name, else username)."""
    if actor is None:
        return ""
    name = actor.get_full_name() if hasattr(actor, "get_full_name") else ""
    if not name:
        name = actor.get_username() if hasattr(actor, "get_username") else str(actor)
    return str(name).strip()[:150]


def deliveries_record(notification_id: int, user_ids: Iterable[UserId]) -> int:
    """Insert pending Delivery rows for ``user_ids``; rows that exist are left alone.

    Returns how many ids were given. The unique (notification, user) constraint makes a
    second run a no-op, whatever the backend.
    """
    return deliveries_record_pairs((notification_id, user_id) for user_id in user_ids)


def deliveries_record_audience(
    notification_id: int, users: Any, chunk_size: int, now: datetime | None = None
) -> int:
    """Insert pending Delivery rows for every user in ``users``, inside the database.

    One ``INSERT … SELECT`` per chunk of ``chunk_size`` users (see ``audience_chunks``): a
    10,000-user broadcast never becomes 10,000 Python objects. Existing rows are left
    alone. Returns how many rows were inserted.
    """
    now = now or timezone.now()
    return sum(
        deliveries_record_chunk(notification_id, users, chunk, now)
        for chunk in audience_chunks(users, chunk_size)
    )


@dataclass(frozen=True)
class AudienceChunk:
    """The users of an audience whose pk is in ``[start, stop)``; None leaves a side open.

    Both bounds are pks of real users of the audience, compared by the database in its own
    order of the pk column: nothing here adds to, subtracts from or even reads the type of a
    primary key, so integers, UUIDs and strings chunk alike.
    """

    start: UserId | None = None
    stop: UserId | None = None

    def of(self, users: Any) -> Any:
        """Return the chunk's part of ``users``, in pk order."""
        if self.start is not None:
            users = users.filter(pk__gte=self.start)
        if self.stop is not None:
            users = users.filter(pk__lt=self.stop)
        return users.order_by("pk")


def audience_chunks(users: Any, chunk_size: int) -> Iterator[AudienceChunk]:
    """Yield the audience in chunks of ``chunk_size`` users, in pk order (keyset).

    Each chunk ends where the next one's first user is: one lookup down the pk index, made
    only when the chunk is reached, so a caller may write each chunk in a transaction of its
    own without the lookups inside them. An audience of N users is ceil(N / chunk_size)
    chunks (one, empty, for nobody) whatever its ids are: five staff whose ids lie millions
    apart are one chunk, not the thousands of id ranges between them. The chunks cover
    every user of the audience exactly once, even one who joins while they are written.
    """
    ordered = users.order_by("pk").values_list("pk", flat=True)
    start = None
    while True:
        rest = ordered if start is None else ordered.filter(pk__gte=start)
        following = list(rest[chunk_size : chunk_size + 1])
        stop = following[0] if following else None
        yield AudienceChunk(start, stop)
        if stop is None:
            return
        start = stop


def deliveries_record_chunk(
    notification_id: int, users: Any, chunk: AudienceChunk, now: datetime | None = None
) -> int:
    """Insert pending rows for the users of ``users`` in ``chunk``; one statement.

    Returns how many rows were inserted (rows that exist are left alone).
    """
    now = now or timezone.now()
    connection = connections[Delivery.objects.db]
    qn = connection.ops.quote_name
    table = qn(Delivery._meta.db_table)
    columns = ", ".join(qn(name) for name in ("notification_id", "user_id", "state", "created_at"))
    verb, tail = (
        ("INSERT OR IGNORE INTO", "")
        if connection.vendor == "sqlite"
        else ("INSERT INTO", " ON CONFLICT DO NOTHING")
    )
    # The ORM prepares the bounds for the column (a UUID becomes what the backend stores).
    # In pk order: the rows then reach the Delivery indexes, which lead with the user or
    # with (notification, user), in key order. Unordered, UUID users come in the table's
    # (random) order and each row lands on another index page: 10,000 rows took 240-450 ms
    # on SQLite instead of 80-150.
    select_sql, select_params = chunk.of(users).values("pk").query.sql_with_params()
    # savepoint=False: a transaction where there is none (the lock below lasts as long as
    # it), and no SAVEPOINT round trips inside the dispatch's own.
    with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor:
        lock_against_user_deletion(connection)
        cursor.execute(
            f"{verb} {table} ({columns}) "  # noqa: S608 - names quoted, values bound
            f"SELECT %s, audience.{qn('pk')}, %s, %s FROM ({select_sql}) AS audience{tail}",
            [notification_id, DeliveryState.PENDING, now, *select_params],
        )
        return max(cursor.rowcount, 0)


# The PostgreSQL advisory lock (one bigint key, any constant no other app is likely to pick:
# "rtnotify" in ASCII) that orders Delivery inserts against user deletions. Delivery has no
# database foreign keys (see the model), so a user's deletion must not delete the user's rows
# while an insert that already read the user is still uncommitted: that insert would commit
# a row naming nobody. Inserts share the lock (they never wait for each other); a user's
# deletion takes it exclusively (receivers.lock_user_before_delete), so it waits for the
# inserts in flight, and inserts that come after it wait for its commit and then no longer
# see the user. One lock per statement, not one per user row: locking each user the insert
# reads (FOR KEY SHARE) would write to every user row of every broadcast.
DELIVERY_INSERT_LOCK = int.from_bytes(b"rtnotify", "big") & (2**63 - 1)


def lock_against_user_deletion(connection: Any) -> None:
    """Hold, until the transaction ends, the lock under which Delivery rows are inserted.

    A statement of its own, before the insert: under READ COMMITTED the insert's snapshot
    is then taken after any user deletion it waited for had committed. SQLite needs none:
    its writers take turns with the whole database (IMMEDIATE transactions).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [DELIVERY_INSERT_LOCK])


def lock_for_user_deletion(connection: Any) -> None:
    """Wait for the Delivery inserts in flight, and hold off new ones, until the transaction
    ends (see ``DELIVERY_INSERT_LOCK``)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DELIVERY_INSERT_LOCK])


def deliveries_record_pairs(pairs: Iterable[tuple[int, UserId]]) -> int:
    """Insert pending Delivery rows for (notification id, user id) pairs, idempotently."""
    now = timezone.now()
    rows = [
        Delivery(notification_id=notification_id, user_id=user_id, created_at=now)
        for notification_id, user_id in pairs
    ]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
    return len(rows)


def _unique_ids(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(i) for i in ids))


def _view_of(row: dict[str, Any], view: str | None, now: datetime) -> str | None:
    """The view whose bucket makes a row's item: ``view`` if the row is in it, else the
    view the row is in (archived, snoozed, or the default)."""
    archived = row["archived_at"] is not None
    snoozed = not archived and row["snoozed_until"] is not None and row["snoozed_until"] > now
    actual = "archived" if archived else "snoozed" if snoozed else None
    wanted = None if view == "unread" else view
    return wanted if wanted == actual else actual


def expand_groups(
    user: AbstractBaseUser | Any, ids: Iterable[int], view: str | None = None
) -> list[int]:
    """Return ``ids`` and, after them, every other row of each one's group item.

    A grouped row's item is its key's rows with the same bucket (selectors.bucket_field)
    in ``view``, the view the verb acts from (None: the default; a row not in it is taken
    in the view it is in). Ungrouped ids, ids not the user's and ids without a row yet (a
    broadcast in flight) stay as they were, for the verb to handle or ignore: nothing of
    another user's is added. Two queries, whatever the number of ids.
    """
    from django.db.models import Q

    ids = _unique_ids(ids)
    if not ids:
        return ids
    now = timezone.now()
    fields = ("notification__group_key", "read_at", "archived_at", "snoozed_until")
    rows = (
        Delivery.objects.for_user(user)
        .filter(notification_id__in=ids)
        .exclude(notification__group_key="")
        .values(*fields)
    )
    wanted: dict[str | None, Any] = {}
    for row in rows:
        row_view = _view_of(row, view, now)
        field = bucket_field(row_view)
        item = item_filter(field, row["notification__group_key"], row[field])
        wanted[row_view] = wanted.get(row_view, Q()) | item
    members: set[int] = set()
    for row_view, items in wanted.items():
        mine = rows_in_status(Delivery.objects.for_user(user), row_view).filter(items)
        members.update(mine.values_list("notification_id", flat=True))
    return ids + sorted(members - set(ids))


def deliveries_mark_delivered(user: AbstractBaseUser | Any, ids: Iterable[int]) -> int:
    """Record that a browser of ``user`` received ``ids``; other users' ids change nothing."""
    ids = _unique_ids(ids)
    if not ids:
        return 0
    rows = Delivery.objects.filter(user=user, notification_id__in=ids, state=DeliveryState.PENDING)
    marked = rows.update(state=DeliveryState.DELIVERED, delivered_at=timezone.now())
    if marked < len(ids) and deliveries_record_in_flight(user, ids):
        marked += rows.update(state=DeliveryState.DELIVERED, delivered_at=timezone.now())
    return marked


def deliveries_mark_delivered_many(acks: dict[int, Iterable[UserId]]) -> int:
    """``deliveries_mark_delivered`` for many users at once: {notification id: user ids}.

    What a daphne process's sockets acknowledged within a few milliseconds, written in one
    transaction: a few UPDATEs (_marks_statements), where a broadcast's
    5,000 acks were 5,000 transactions (on SQLite each under the one write lock). Rows of a
    broadcast pushed but not yet recorded are written first, for the acknowledging users
    only, in one ``INSERT … SELECT`` per notification (see ``deliveries_record_in_flight``).
    """
    acks = {nid: list(dict.fromkeys(users)) for nid, users in acks.items()}
    if not acks:
        return 0
    now = timezone.now()
    marked = 0
    in_flight = (
        Notification.objects.unrecorded()
        .exclude(audience=Audience.USER)
        .live()
        .filter(pk__in=list(acks))
    )
    if in_flight.exists():
        chunk_size = conf.get().CHUNK_SIZE
        with transaction.atomic():
            for notification in _key_share_locked(in_flight.order_by("pk")):
                users = acks[notification.pk]
                for start in range(0, len(users), USERS_PER_STATEMENT):
                    audience = audience_queryset(notification).filter(
                        pk__in=users[start : start + USERS_PER_STATEMENT]
                    )
                    deliveries_record_audience(notification.pk, audience, chunk_size, now)
    # Each UPDATE commits on its own (autocommit), in notification order: two daphne
    # processes writing batches that share rows (one user, a socket on each) must never
    # hold one batch's row locks while waiting for the other's (a deadlock on PostgreSQL).
    for rows in _marks_statements(acks):
        give_way()  # a user's verb in this process first (write_priority)
        marked += Delivery.objects.filter(rows, state=DeliveryState.PENDING).update(
            state=DeliveryState.DELIVERED, delivered_at=now
        )
    return marked


def deliveries_record_in_flight(user: AbstractBaseUser | Any, ids: Iterable[int] | None) -> int:
    """Write the user's rows of broadcasts already pushed but not yet recorded.

    A broadcast reaches the sockets before its rows are written (a few hundred ms for a big
    audience): an ack or a read in that window would otherwise find no row and be lost.
    Only notifications whose audience really includes the user get a row. ``ids`` None
    means every broadcast in flight (for "mark all read").
    """
    in_flight = Notification.objects.unrecorded().exclude(audience=Audience.USER).live()
    if ids is not None:
        in_flight = in_flight.filter(pk__in=list(ids))
    if not in_flight.exists():  # the usual answer: no write, no transaction, no lock
        return 0
    user_id = getattr(user, "pk", user)
    chunk_size = conf.get().CHUNK_SIZE
    with transaction.atomic():
        return sum(
            deliveries_record_audience(
                notification.pk,
                recipients(notification, audience_queryset(notification).filter(pk=user_id)),
                chunk_size,
            )
            for notification in _key_share_locked(in_flight.order_by("pk"))
        )


def _key_share_locked(notifications: Any) -> list[Notification]:
    """Return ``notifications``, on PostgreSQL each locked ``FOR KEY SHARE`` until commit.

    A notification's deletion locks its row first (receivers.lock_notification_before_delete)
    and then deletes its Delivery rows: an in-flight row inserted beside it, unlocked, would
    commit after that and outlive the notification. Under the shared lock the deletion waits
    for this insert, and a row deleted first is not returned at all. Many syncs share it at
    once, beside the recorder's NO KEY UPDATE (dispatch._lock_unrecorded); only a deletion
    makes them wait. SQLite's
    writers take turns (the caller's transaction holds the write lock), so there a plain
    read inside the transaction suffices.
    """
    connection = connections[notifications.db]
    if connection.vendor != "postgresql":
        return list(notifications)
    sql, params = notifications.query.sql_with_params()
    table = connection.ops.quote_name(Notification._meta.db_table)
    return list(Notification.objects.raw(f"{sql} FOR KEY SHARE OF {table}", params))


@dataclass(frozen=True)
class ReadResult:
    """Ids that became read now, and the user's unread count afterwards."""

    ids: list[int]
    unread: int


@foreground()
def deliveries_mark_read(
    user: AbstractBaseUser | Any, ids: Iterable[int], *, group: bool = False
) -> ReadResult:
    """Mark the user's ``ids`` read; ids that are not the user's are ignored, not revealed.

    ``group``: each id stands for its whole group item (``expand_groups``), read as one
    (one ``read_at``, so the item stays one in the lists).
    """
    ids = _unique_ids(ids)
    changed: list[int] = []
    if ids:
        with transaction.atomic():
            if group:
                ids = expand_groups(user, ids)
            rows = Delivery.objects.filter(
                user=user, notification_id__in=ids, state__in=UNREAD_STATES
            )
            changed = sorted(rows.values_list("notification_id", flat=True))
            if len(changed) < len(ids) and deliveries_record_in_flight(user, ids):
                changed = sorted(rows.values_list("notification_id", flat=True))
            if changed:
                _mark_read(Delivery.objects.filter(user=user, notification_id__in=changed))
    return ReadResult(ids=changed, unread=unread_count(user))


@foreground()
def deliveries_mark_all_read(user: AbstractBaseUser | Any) -> ReadResult:
    """Mark every unread notification of the user read."""
    with transaction.atomic():
        deliveries_record_in_flight(user, None)
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


# ---- triage: Done, snooze, mark unread, seen ----------------------------------------------


@dataclass(frozen=True)
class TriageResult:
    """What a triage verb changed: ``kind`` names the frame the user's sockets get
    (``archived`` / ``unarchived`` / ``unread`` / ``snoozed``), ``until`` a snooze's end."""

    kind: str
    ids: list[int]
    unread: int
    until: datetime | None = None


def _triage(
    user: Any,
    ids: Iterable[int],
    kind: str,
    select: Any,
    change: dict[str, Any],
    group: bool = False,
) -> TriageResult:
    """Apply ``change`` to the user's rows among ``ids`` that ``select`` picks; count after.

    Ids that are not the user's change nothing and are not named in the answer. A broadcast
    pushed but not recorded yet gets its row first (as a read does), so a Done clicked in
    that window is not lost. ``group``: each id stands for its group item, in the view the
    verb acts from (Archived for an unarchive, else the default), expanded in the same
    transaction; one statement changes them all, so they stay one item.
    """
    ids = _unique_ids(ids)
    changed: list[int] = []
    if ids:
        with transaction.atomic():
            if group:
                ids = expand_groups(user, ids, "archived" if kind == "unarchived" else None)
            rows = select(Delivery.objects.filter(user=user, notification_id__in=ids))
            changed = sorted(rows.values_list("notification_id", flat=True))
            if len(changed) < len(ids) and deliveries_record_in_flight(user, ids):
                changed = sorted(rows.values_list("notification_id", flat=True))
            if changed:
                mine = Delivery.objects.filter(user=user, notification_id__in=changed)
                mine.update(**change)
                if kind == "unread":
                    _make_unread(mine)
    return TriageResult(
        kind=kind, ids=changed, unread=unread_count(user), until=change.get("snoozed_until")
    )


@foreground()
def deliveries_archive(
    user: AbstractBaseUser | Any, ids: Iterable[int], *, group: bool = False
) -> TriageResult:
    """Mark the user's ``ids`` Done: out of the bell and the unread count, kept in Archived.

    Done ends a snooze too: it will not come back.
    """
    return _triage(
        user,
        ids,
        "archived",
        lambda rows: rows.filter(archived_at__isnull=True),
        {"archived_at": timezone.now(), "snoozed_until": None},
        group,
    )


@foreground()
def deliveries_unarchive(
    user: AbstractBaseUser | Any, ids: Iterable[int], *, group: bool = False
) -> TriageResult:
    """Move the user's archived ``ids`` back to the inbox, read or unread as they were."""
    return _triage(
        user,
        ids,
        "unarchived",
        lambda rows: rows.filter(archived_at__isnull=False),
        {"archived_at": None},
        group,
    )


@foreground()
def deliveries_mark_unread(
    user: AbstractBaseUser | Any, ids: Iterable[int], *, group: bool = False
) -> TriageResult:
    """Make the user's ``ids`` unread again, back in the bell: out of Archived, unsnoozed.

    A read row goes back to delivered (a browser had it: the read proves it), so the
    delivery stats keep what happened.
    """
    from django.db.models import Q

    return _triage(
        user,
        ids,
        "unread",
        lambda rows: rows.filter(
            Q(state=DeliveryState.READ)
            | Q(archived_at__isnull=False)
            | Q(snoozed_until__isnull=False)
        ),
        {"archived_at": None, "snoozed_until": None},
        group,
    )


def _make_unread(rows: Any) -> None:
    """Read rows become delivered-unread (a browser had them); pending ones stay pending."""
    rows.filter(state=DeliveryState.READ).update(state=DeliveryState.DELIVERED, read_at=None)


@foreground()
def deliveries_snooze(
    user: AbstractBaseUser | Any, ids: Iterable[int], until: datetime, *, group: bool = False
) -> TriageResult:
    """Snooze the user's ``ids`` until ``until``: out of the bell and the count till then.

    The listeners are told to wake at ``until`` (after commit), when the rows come back as
    if new (``deliveries_return_snoozed``). Archived rows stay Done.
    """
    from notifications.publisher import publish_wake_on_commit

    if timezone.is_naive(until):
        raise ValueError("until must be an aware datetime")
    with transaction.atomic():
        result = _triage(
            user,
            ids,
            "snoozed",
            lambda rows: rows.filter(archived_at__isnull=True),
            {"snoozed_until": until},
            group,
        )
        if result.ids:
            publish_wake_on_commit(until)
    return result


def deliveries_mark_seen(user: AbstractBaseUser | Any, ids: Iterable[int]) -> int:
    """Record that ``ids`` were on the user's screen (an open list, a toast); first time only."""
    return deliveries_mark_seen_many({i: [getattr(user, "pk", user)] for i in _unique_ids(ids)})


def deliveries_mark_seen_many(seen: dict[int, Iterable[UserId]]) -> int:
    """Record seen marks of many users at once: {notification id: user ids}, first time only.

    A few UPDATEs (up to NOTIFICATIONS_PER_STATEMENT notifications and USERS_PER_STATEMENT
    users each), each committed alone:
    a broadcast toasted in 5,000 browsers is a few statements, not 5,000 (batching.py).
    """
    now = timezone.now()
    marked = 0
    # One statement at a time (autocommit), as the acks: no batch holds locks for another.
    marks = {nid: list(dict.fromkeys(users)) for nid, users in seen.items()}
    for rows in _marks_statements(marks):
        give_way()
        marked += Delivery.objects.filter(rows, seen_at__isnull=True).update(seen_at=now)
    return marked


@dataclass(frozen=True)
class Returned:
    """A snoozed row that came due: whose, and which notification (loaded)."""

    user_id: UserId
    notification: Notification


def deliveries_return_snoozed(now: datetime | None = None, limit: int = 500) -> list[Returned]:
    """Bring back the snoozes that have come due, oldest first; each row exactly once.

    The row's snooze is cleared and it becomes unread ("as if new"); the caller pushes each
    one to its user. Several listeners may call this at once: on PostgreSQL the rows are
    taken ``FOR UPDATE SKIP LOCKED`` (one listener each), on SQLite the write lock of the
    IMMEDIATE transaction orders them. Expired notifications come back to no one.
    """
    now = now or timezone.now()
    with transaction.atomic():
        due = Delivery.objects.filter(snoozed_until__isnull=False, snoozed_until__lte=now)
        due = due.order_by("snoozed_until", "id")
        if connections[Delivery.objects.db].vendor == "postgresql":
            due = due.select_for_update(skip_locked=True, of=("self",))
        rows = list(due.select_related("notification")[:limit])
        if not rows:
            return []
        # Every due row is cleared, even one that comes back to no one (expired, or a
        # stray archived one): a snooze left in the past would wake the listener for ever.
        picked = [row.pk for row in rows]
        Delivery.objects.filter(pk__in=picked).update(snoozed_until=None)
        _make_unread(Delivery.objects.filter(pk__in=picked, archived_at__isnull=True))
        return [
            Returned(row.user_id, row.notification)
            for row in rows
            if row.archived_at is None and not row.notification.expired_by(now)
        ]


def next_snooze_due_at() -> datetime | None:
    """Return when the next snooze ends (None: nothing snoozed)."""
    from django.db.models import Min

    return Delivery.objects.filter(snoozed_until__isnull=False).aggregate(
        next=Min("snoozed_until")
    )["next"]


adeliveries_mark_delivered = db_async(deliveries_mark_delivered)
adeliveries_mark_delivered_many = db_async(deliveries_mark_delivered_many)
adeliveries_mark_read = db_async(deliveries_mark_read)
adeliveries_mark_all_read = db_async(deliveries_mark_all_read)
adeliveries_archive = db_async(deliveries_archive)
adeliveries_unarchive = db_async(deliveries_unarchive)
adeliveries_mark_unread = db_async(deliveries_mark_unread)
adeliveries_snooze = db_async(deliveries_snooze)
adeliveries_mark_seen = db_async(deliveries_mark_seen)
adeliveries_mark_seen_many = db_async(deliveries_mark_seen_many)


# ---- the admin's actions ------------------------------------------------------------------


def notification_resend_undelivered(notification: Notification, *, layer: Any = None) -> int:
    """Push the notification again to each recipient whose Delivery is still pending.

    Returns how many users it was pushed to: none when it is not dispatched yet (the
    listener will do it) or has expired (it has left the bell). Errors of the channel layer
    (Redis down) are raised for the caller to report, and so is ``TimeoutError`` when a
    batch of pushes gets no answer within ``deadlines.PUSH_BATCH_SECONDS`` (a silent Redis):
    an admin action must answer, not hang. The bell de-duplicates by id, so a user whose
    browser got the first push and has not acked yet sees it once.
    """
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from notifications.deadlines import group_send_all
    from notifications.events import layer_created_event, serialize_notification, user_group

    if notification.dispatched_at is None or notification.is_expired:
        return 0
    user_ids = list(
        Delivery.objects.filter(notification=notification, state=DeliveryState.PENDING)
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )
    if not user_ids:
        return 0
    payload = serialize_notification(notification)

    async def push() -> None:
        await group_send_all(
            layer or get_channel_layer(),
            [(user_group(uid), layer_created_event(payload, user_group(uid))) for uid in user_ids],
        )

    async_to_sync(push)()
    return len(user_ids)


def notification_expire(notification: Notification, *, now: datetime | None = None) -> bool:
    """Expire the notification now, so it leaves bells and inboxes; False if it already had."""
    now = now or timezone.now()
    updated = Notification.objects.filter(pk=notification.pk).live(now).update(expires_at=now)
    if updated:
        notification.expires_at = now
        # The listener takes it out of every open bell when it wakes (at once, not at its
        # next planned wake-up or sweep).
        from notifications.publisher import publish_wake_on_commit

        publish_wake_on_commit(now)
    return bool(updated)
