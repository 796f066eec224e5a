"""The wire contract in one place: the pub/sub message, socket frames and layer events."""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal, TypeAlias, TypedDict, get_args

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone as dj_timezone

from notifications.models import Notification
from notifications.validators import validate_notification_url

PUBSUB_VERSION = 1

# A user's primary key, of whatever type the site's user model gives it (int, UUID, str…):
# nothing in the app may assume integer user ids. Notification ids stay int.
UserId: TypeAlias = Any


class SerializedNotification(TypedDict):
    id: int
    title: str
    body: str
    level: str
    category: str
    critical: bool
    group_key: str
    actor: dict[str, str] | None
    url: str
    created_at: str
    dispatched_at: str | None
    read: bool
    archived: bool
    snoozed_until: str | None


class ListedNotification(SerializedNotification):
    """An entry of a list (API page, sync answer): the head of its group item, with the
    item's size and actors (1 and its own actor for an ungrouped one). Pushed
    ``notification`` frames carry the plain SerializedNotification."""

    group_count: int
    group_actors: list[str]
    group_actor_count: int


# The keys a list entry adds to a serialized notification.
GROUP_FIELDS = ("group_count", "group_actors", "group_actor_count")


class PubSubMessage(TypedDict):
    v: int
    event: Literal["created"]
    id: int


class ProbeMessage(TypedDict):
    """A listener's message to itself: proof that its subscription still receives."""

    v: int
    event: Literal["probe"]
    id: None
    nonce: str


@dataclass(frozen=True)
class PubSubEvent:
    """A parsed pub/sub message: a notification ``created`` (``id``), a ``probe``
    (``nonce``), or a ``wake`` (``at``: something falls due then, e.g. a snooze's end)."""

    event: Literal["created", "probe", "wake"]
    id: int | None = None
    nonce: str | None = None
    at: datetime | None = None


class EventError(ValueError):
    """A pub/sub message that does not follow the contract."""


class FrameError(ValueError):
    """A client frame that does not follow the protocol; ``code`` goes in the error frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# ---- pub/sub -----------------------------------------------------------------------------


def build_created_message(notification_id: int) -> str:
    """Return the PUBLISH payload announcing a committed notification."""
    message: PubSubMessage = {"v": PUBSUB_VERSION, "event": "created", "id": int(notification_id)}
    return json.dumps(message, separators=(",", ":"))


def build_probe_message(nonce: str) -> str:
    """Return the PUBLISH payload of a listener's probe; nothing is dispatched for it."""
    message: ProbeMessage = {"v": PUBSUB_VERSION, "event": "probe", "id": None, "nonce": nonce}
    return json.dumps(message, separators=(",", ":"))


def build_wake_message(at: datetime) -> str:
    """Return the PUBLISH payload asking listeners to wake at ``at`` (a snooze ends then)."""
    return json.dumps(
        {"v": PUBSUB_VERSION, "event": "wake", "id": None, "at": at.isoformat()},
        separators=(",", ":"),
    )


def _check_version(message: dict[str, Any]) -> None:
    version = message.get("v")
    if type(version) is not int or version != PUBSUB_VERSION:  # True is no version 1
        raise EventError(f"unsupported version {version!r}")


def parse_pubsub_event(data: bytes | str) -> PubSubEvent:
    """Return what a pub/sub payload says (created or probe), or raise EventError.

    The listener reads every message through this: a probe (its own or another listener's)
    is told apart here and never reaches the dispatch path.
    """
    try:
        message = json.loads(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventError(f"not JSON: {data[:80]!r}") from exc
    if isinstance(message, dict) and message.get("event") == "probe":
        _check_version(message)
        nonce = message.get("nonce")
        if not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
            raise EventError(f"bad probe nonce {nonce!r}")
        return PubSubEvent("probe", nonce=nonce)
    if isinstance(message, dict) and message.get("event") == "wake":
        _check_version(message)
        raw = message.get("at")
        try:
            at = datetime.fromisoformat(raw) if isinstance(raw, str) and len(raw) <= 64 else None
        except ValueError:
            at = None
        if at is None or dj_timezone.is_naive(at):
            raise EventError(f"bad wake time {raw!r}")
        return PubSubEvent("wake", at=at)
    return PubSubEvent("created", id=parse_pubsub_message(data))


def parse_pubsub_message(data: bytes | str) -> int:
    """Return the notification id announced by a pub/sub payload, or raise EventError.

    A probe is an EventError here: it announces no notification.
    """
    try:
        message = json.loads(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventError(f"not JSON: {data[:80]!r}") from exc
    if not isinstance(message, dict):
        raise EventError("not an object")
    _check_version(message)
    if message.get("event") != "created":
        raise EventError(f"unknown event {message.get('event')!r}")
    notification_id = message.get("id")
    if not _is_id(notification_id):
        raise EventError(f"bad id {notification_id!r}")
    return notification_id


# ---- serialization -----------------------------------------------------------------------


def serialize_notification(
    notification: Notification,
    *,
    read: bool = False,
    archived: bool = False,
    snoozed_until: datetime | None = None,
) -> SerializedNotification:
    """Return a notification as every client sees it (socket frames and the JSON API).

    ``dispatched_at`` is when it reached its users: lists are in that order and show that
    time (a scheduled notification is created long before it arrives).
    """
    dispatched = notification.dispatched_at
    return {
        "id": notification.pk,
        "title": notification.title,
        "body": notification.body,
        "level": notification.level,
        "category": notification.category,
        "critical": notification.critical,
        "group_key": notification.group_key,
        "actor": (
            {"id": str(notification.actor_id), "name": notification.actor_name}
            if notification.actor_id is not None
            else None
        ),
        "url": safe_link(notification.url),
        "created_at": notification.created_at.isoformat(),
        "dispatched_at": dispatched.isoformat() if dispatched else None,
        "read": read,
        "archived": archived,
        "snoozed_until": snoozed_until.isoformat() if snoozed_until else None,
    }


def safe_link(url: str) -> str:
    """Return ``url`` if it may become a link, else "" — even for rows saved without
    validation (``bulk_create``, raw SQL, an old row): no client ever gets javascript:."""
    try:
        validate_notification_url(url or "")
    except ValidationError:
        return ""
    return url or ""


# ---- server → client frames --------------------------------------------------------------


def hello_frame(unread: int, last_id: int | None) -> dict[str, Any]:
    return {"type": "hello", "unread": unread, "last_id": last_id}


def notification_frame(notification: SerializedNotification) -> dict[str, Any]:
    return {"type": "notification", "notification": notification}


def missed_frame(
    notifications: list[SerializedNotification],
    cursor: int | None = None,
    unread: int | None = None,
    *,
    recalled: list[int] | None = None,
    updated: list[dict[str, Any]] | None = None,
    next_since: int | None = None,
) -> dict[str, Any]:
    """Answer a sync; ``cursor`` is the ``since`` for the next one (it may lag the list),
    ``unread`` the count after it (left out when not known); ``recalled`` and ``updated``
    (left out when empty) what of the user's was recalled or edited lately; ``next`` (left
    out when None) the ``since`` of the next page when this one was capped."""
    frame: dict[str, Any] = {"type": "missed", "notifications": notifications, "cursor": cursor}
    if unread is not None:
        frame["unread"] = unread
    if recalled:
        frame["recalled"] = recalled
    if updated:
        frame["updated"] = updated
    if next_since is not None:
        frame["next"] = next_since
    return frame


def _encoded_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def fit_missed_frame(frame: dict[str, Any], max_bytes: int, *, after: int | None) -> dict[str, Any]:
    """Return ``frame`` cut to at most ``max_bytes`` of JSON, the socket's frame limit.

    MAX_SYNC notifications with long bodies (or their group keys) outgrow a frame, and
    daphne refuses to send one over its limit: the page then got nothing. An answer to a
    ``since`` (``after``) keeps its oldest entries and says where the next page starts
    (``next``: the last entry kept; the cursor stays at ``after``). A first page keeps its
    newest (the rest is history the inbox holds). A cut answer leaves its edits out: the
    sync for the next page, sent at once, brings them again. A single entry too big for any
    frame (a body of tens of kilobytes) is passed over by ``next``: the inbox shows it.
    """
    if _encoded_size(frame) <= max_bytes:
        return frame
    entries = list(frame["notifications"])
    trimmed = {key: value for key, value in frame.items() if key != "updated"}
    room = max_bytes - _encoded_size({**trimmed, "notifications": [], "next": 2**53})
    kept: list[Any] = []
    used = 0
    for entry in entries if after is not None else reversed(entries):
        size = _encoded_size(entry) + 1  # the comma
        if used + size > room:
            break
        kept.append(entry)
        used += size
    if after is None:
        kept.reverse()
        return {**trimmed, "notifications": kept}
    result = {**trimmed, "notifications": kept, "cursor": after}
    if kept or entries:
        result["next"] = (kept or entries)[-1 if kept else 0]["id"]
    return result


def read_frame(ids: list[int], unread: int) -> dict[str, Any]:
    return {"type": "read", "ids": ids, "unread": unread}


# The triage frames, each sent to every socket of the user after a change.
TRIAGE_FRAME_TYPES = ("archived", "unarchived", "unread", "snoozed")


def triage_frame(
    kind: str, ids: list[int], unread: int, until: datetime | None = None
) -> dict[str, Any]:
    """``archived`` / ``unarchived`` / ``unread`` / ``snoozed`` (with ``until``) for ``ids``."""
    if kind not in TRIAGE_FRAME_TYPES:
        raise ValueError(f"not a triage frame: {kind!r}")
    frame: dict[str, Any] = {"type": kind, "ids": ids, "unread": unread}
    if kind == "snoozed":
        frame["until"] = until.isoformat() if until else None
    return frame


def content_of(notification: Notification) -> dict[str, Any]:
    """What an edit can change, as ``updated`` frames and syncs carry it (no per-user state:
    one frame serves the whole audience, so the bell keeps its own read/archived state)."""
    edited = notification.edited_at
    return {
        "id": notification.pk,
        "title": notification.title,
        "body": notification.body,
        "level": notification.level,
        "url": safe_link(notification.url),
        "edited_at": edited.isoformat() if edited else None,
    }


def recalled_frame(ids: list[int], unread: int | None = None) -> dict[str, Any]:
    """The notifications were recalled: they leave the bell. ``unread`` only when the frame
    goes to one user's sockets (a broadcast's members' counts differ; the bell subtracts)."""
    frame: dict[str, Any] = {"type": "recalled", "ids": ids}
    if unread is not None:
        frame["unread"] = unread
    return frame


def updated_frame(content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "updated", "notification": content}


def expired_frame(ids: list[int]) -> dict[str, Any]:
    """Sent to an audience's groups when notifications expire: they leave every open bell.

    No ``unread``: one frame serves every member of the audience, whose counts differ. The
    bell takes one off for each unread one it held; the next pong has the server's count.
    """
    return {"type": "expired", "ids": ids}


def pong_frame(last_id: int | None = None, unread: int | None = None) -> dict[str, Any]:
    """Answer a ping with the newest delivered id and the unread count.

    A client that does not know ``last_id`` missed a push and should sync; ``unread`` puts a
    badge that drifted (a push lost, a race at connect) right again.
    """
    return {"type": "pong", "last_id": last_id, "unread": unread}


def error_frame(code: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail}


# ---- client → server frames --------------------------------------------------------------


ClientType: TypeAlias = Literal[
    "ack", "read", "read_all", "sync", "ping", "archive", "unarchive", "unread", "snooze", "seen"
]


@dataclass(frozen=True)
class ClientFrame:
    """A validated client frame: ``ids`` for the id verbs, ``since`` for sync, ``until``
    for snooze (aware; see ``parse_snooze_until``), ``group`` for the verbs that may act on
    whole group items (``GROUP_FRAME_TYPES``)."""

    type: ClientType
    ids: tuple[int, ...] = ()
    since: int | None = None
    until: datetime | None = None
    group: bool = False


CLIENT_TYPES: tuple[ClientType, ...] = get_args(ClientType)
# The frames that carry a list of the user's notification ids and nothing else.
ID_FRAME_TYPES = ("ack", "read", "archive", "unarchive", "unread", "seen")
# The verbs whose ``"group": true`` makes each id stand for its whole group item.
GROUP_FRAME_TYPES = ("read", "archive", "unarchive", "unread", "snooze")
# How far ahead a snooze may go: further is a typo, not a plan.
MAX_SNOOZE = timedelta(days=366)


def parse_snooze_until(
    value: Any, *, now: datetime | None = None, default_zone: tzinfo | None = None
) -> datetime:
    """Return a snooze's end as an aware datetime, or raise FrameError saying why not.

    ISO 8601; a time without an offset is read in ``default_zone`` (the user's, from the
    ``tz`` cookie) or, without one, in the active zone. It must lie ahead, within a year.
    """
    if not isinstance(value, str) or len(value) > 64:
        raise FrameError("invalid_until", '"until" must be an ISO 8601 date and time.')
    try:
        until = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FrameError("invalid_until", '"until" must be an ISO 8601 date and time.') from exc
    if dj_timezone.is_naive(until):
        until = dj_timezone.make_aware(until, default_zone or dj_timezone.get_current_timezone())
    now = now or dj_timezone.now()
    if until <= now:
        raise FrameError("invalid_until", '"until" must be in the future.')
    if until > now + MAX_SNOOZE:
        raise FrameError("invalid_until", '"until" may be at most a year ahead.')
    return until


def parse_client_frame(
    text: str | None, *, max_ids: int, zone: tzinfo | None = None
) -> ClientFrame:
    """Validate one text frame from a browser; raise FrameError saying what is wrong.

    ``zone`` reads a snooze's ``until`` that has no offset (the user's time zone).
    """
    if text is None:
        raise FrameError("binary_frame", "Send JSON text frames, not binary ones.")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise FrameError("invalid_json", "The frame is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", 'A frame must be a JSON object with a "type".')
    frame_type = data.get("type")
    if not isinstance(frame_type, str):
        raise FrameError("invalid_frame", 'A frame must have a string "type".')
    if frame_type not in CLIENT_TYPES:
        raise FrameError(
            "unknown_type", f"Unknown type; expected one of {', '.join(CLIENT_TYPES)}."
        )
    group = _parse_group(data.get("group")) if frame_type in GROUP_FRAME_TYPES else False
    if frame_type in ID_FRAME_TYPES:
        return ClientFrame(frame_type, ids=_parse_ids(data.get("ids"), max_ids), group=group)
    if frame_type == "snooze":
        ids = _parse_ids(data.get("ids"), max_ids)
        until = parse_snooze_until(data.get("until"), default_zone=zone)
        return ClientFrame("snooze", ids=ids, until=until, group=group)
    if frame_type == "sync":
        since = data.get("since")
        if since is not None and not (_is_id(since) or (type(since) is int and since == 0)):
            raise FrameError("invalid_since", '"since" must be a notification id or null.')
        return ClientFrame("sync", since=since)
    return ClientFrame(frame_type)


def _parse_group(value: Any) -> bool:
    """``"group"``: absent (or null) is false; anything but a JSON boolean is refused, so a
    typo such as ``"group": "yes"`` does not silently act on one row only."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise FrameError("invalid_group", '"group" must be true or false.')


def _parse_ids(ids: Any, max_ids: int) -> tuple[int, ...]:
    if not isinstance(ids, list):
        raise FrameError("invalid_ids", '"ids" must be a list of notification ids.')
    if len(ids) > max_ids:
        raise FrameError("too_many_ids", f"At most {max_ids} ids per frame.")
    if not all(_is_id(value) for value in ids):
        raise FrameError("invalid_ids", '"ids" must hold positive integers only.')
    return tuple(dict.fromkeys(ids))


def _is_id(value: Any) -> bool:
    # bool is an int subclass; JSON true must not pass for id 1. Cap at 2**63-1 (BigAutoField).
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


# ---- channel layer events ----------------------------------------------------------------
# Each names the group it is sent to: a daphne process joins each group once (fanout.py)
# and hands the event to its local sockets in that group.


def layer_created_event(notification: SerializedNotification, group: str) -> dict[str, Any]:
    """A push of ``notification`` to ``group``; ``send`` names this one send.

    A notification may be pushed again on purpose (a snooze that came back, an admin's
    re-push), so its id does not name a send. channels-redis hands a message over twice
    when Redis fails between the hand-over and the clean-up of its backup (a Sentinel
    failover); the hub drops the second by its ``send`` (``fanout.LocalHub``).
    """
    return {
        "type": "notify.created",
        "group": group,
        "notification": notification,
        "send": random.getrandbits(63),
    }


def layer_read_event(ids: list[int], unread: int, group: str) -> dict[str, Any]:
    return {"type": "notify.read", "group": group, "ids": ids, "unread": unread}


def layer_state_event(frame: dict[str, Any], group: str) -> dict[str, Any]:
    """Carry a user's triage frame (``triage_frame``) to the sockets in ``group``."""
    return {"type": "notify.state", "group": group, "frame": frame}


def preferences_frame(preferences: dict[str, Any]) -> dict[str, Any]:
    return {"type": "preferences", "preferences": preferences}


def layer_preferences_event(
    preferences: dict[str, Any], muted: list[str], group: str
) -> dict[str, Any]:
    """A user's new preferences: the frame for the bell, and the slugs sockets now drop."""
    return {
        "type": "notify.preferences",
        "group": group,
        "preferences": preferences,
        "muted": muted,
    }


def layer_logout_event(group: str) -> dict[str, Any]:
    """Tell the sockets of one browser session that it logged out."""
    return {"type": "notify.logout", "group": group}


def layer_membership_event(group: str) -> dict[str, Any]:
    """Tell a user's sockets to recompute their groups (staff flag or Group membership)."""
    return {"type": "notify.membership", "group": group}


# ---- group names -------------------------------------------------------------------------
# Derived on the server from primary keys only; channels allows ASCII letters, digits, -_. .

GROUP_ALL = "notifications.all"
GROUP_STAFF = "notifications.staff"


# A user pk that may go into a group name as it is; anything else is hashed. No dots: a
# hashed name ("….h.<hex>") can never equal a verbatim one.
_VERBATIM_PK = re.compile(r"[A-Za-z0-9_-]{1,64}")


def user_group(user_id: UserId) -> str:
    """Return the group of one user's sockets, a valid channels name for any kind of pk.

    The pk is first made what the user model's pk field makes of it, so the listener (ids
    read from rows), the consumer (``scope["user"].pk``) and a caller holding the pk as a
    string (``"42"``, a UUID's text) name the same group. Integers and UUIDs appear as they
    are; a string pk that channels would refuse (an email address, a long key) becomes a
    digest of it: deterministic, ASCII, short.
    """
    try:
        value = get_user_model()._meta.pk.to_python(user_id)
    except ValidationError as exc:  # "7 evil" for an integer pk: a bug, not a name
        raise ValueError(f"not a user id: {user_id!r}") from exc
    if isinstance(value, int | uuid.UUID):
        return f"notifications.user.{value}"
    text = str(value)
    if _VERBATIM_PK.fullmatch(text):
        return f"notifications.user.{text}"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]
    return f"notifications.user.h.{digest}"


def auth_group_group(group_id: int) -> str:
    return f"notifications.group.{int(group_id)}"


def session_group(session_key: str) -> str:
    """The group of one browser session's sockets; the key itself never reaches Redis."""
    digest = hashlib.sha256(session_key.encode("utf-8")).hexdigest()[:40]
    return f"notifications.session.{digest}"
