"""``manage.py watch_notifications``: print the pipeline's events as they happen; never dispatch.

Examples::

    python manage.py watch_notifications
    python manage.py watch_notifications --user alice --level error
    python manage.py watch_notifications --json | jq .

It subscribes to the app's channel (``created``, the save hook's message) and to
``<CHANNEL>:watch`` (what ``notifications.observe`` publishes: dispatched, delivered, read,
archived, unarchived, unread, snoozed, returned, expired) and only reads the database, for
titles and usernames. Unlike a second ``listen_notifications``, it takes no part in
dispatching: run as many as you like, beside any number of listeners.
"""

from __future__ import annotations

import json
import random
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.management.color import Style
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from notifications import conf, observe, redis_clients
from notifications.audience import audience_queryset
from notifications.models import Notification

LEVELS = ("info", "success", "warning", "error")
# Events about a user's rows (their fields: user, ids); the others are about one notification.
USER_EVENTS = ("delivered", "read", "archived", "unarchived", "unread", "snoozed", "returned")
NOTIFICATION_EVENTS = ("created", "dispatched", "expired", "recalled", "edited")
# How long one wait for a message lasts before the loop looks at its stop flag again.
POLL_SECONDS = 0.5
# Titles and usernames looked up once; past this many entries the cache starts over, so a
# watcher left running for weeks does not grow without bound.
CACHE_LIMIT = 10_000
# The widest event name ("unarchived"), so the columns line up.
EVENT_WIDTH = max(len(name) for name in USER_EVENTS + NOTIFICATION_EVENTS)
TITLE_WIDTH = 60


@dataclass(frozen=True)
class Info:
    """What a line shows about one notification, read once from the database."""

    id: int
    title: str
    level: str
    audience: str
    for_user: bool  # whether the --user user is in its audience (True without --user)
    target: str  # the audience in words: "alice", "group demo-team", "staff", "all"


class Lookup:
    """Read-only, cached access to titles, levels and usernames (never a write)."""

    def __init__(self, user_pk: str | None = None) -> None:
        self.user_pk = user_pk
        self.notifications: dict[int, Info | None] = {}
        self.usernames: dict[str, str] = {}

    def infos(self, ids: Iterable[int]) -> dict[int, Info | None]:
        """Return what is known of each id (None: deleted, or the database is unavailable)."""
        ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
        missing = [i for i in ids if i not in self.notifications]
        if missing:
            if len(self.notifications) > CACHE_LIMIT:
                self.notifications.clear()
            found = self._load(missing)
            for notification_id in missing:
                self.notifications[notification_id] = found.get(notification_id)
        return {i: self.notifications.get(i) for i in ids}

    def _load(self, ids: list[int]) -> dict[int, Info]:
        _close_stale_connections()
        try:
            rows = Notification.objects.filter(pk__in=ids).only(
                "id", "title", "level", "audience", "recipient_id", "group_id"
            )
            return {row.pk: self._info(row) for row in rows}
        except DatabaseError:
            return {}

    def _info(self, row: Notification) -> Info:
        for_user = True
        if self.user_pk is not None:
            for_user = audience_queryset(row).filter(pk=self.user_pk).exists()
        if row.audience == "user" and row.recipient_id is not None:
            target = self.username(str(row.recipient_id))
        elif row.audience == "group" and row.group_id is not None:
            group = Group.objects.filter(pk=row.group_id).values_list("name", flat=True).first()
            target = f"group {group or row.group_id}"
        else:
            target = row.audience
        return Info(row.pk, row.title, row.level, row.audience, for_user, target)

    def username(self, pk: str) -> str:
        """Return the username of the user ``pk`` (``pk`` itself when it cannot be found)."""
        if pk not in self.usernames:
            if len(self.usernames) > CACHE_LIMIT:
                self.usernames.clear()
            _close_stale_connections()
            try:
                user = get_user_model()._default_manager.filter(pk=pk).first()
            except (DatabaseError, ValidationError, ValueError, TypeError):
                return pk
            self.usernames[pk] = user.get_username() if user is not None else pk
        return self.usernames[pk]


def _close_stale_connections() -> None:
    """Drop a connection the database closed meanwhile: this process runs for days.

    Not inside a transaction (a test's), whose connection is in use by definition.
    """
    if not connection.in_atomic_block:
        close_old_connections()


def event_ids(message: dict[str, Any]) -> list[int]:
    """Return the notification ids a watch message is about (``id`` or ``ids``)."""
    if message.get("id") is not None:
        return [message["id"]]
    ids = message.get("ids")
    return list(ids) if isinstance(ids, list) else []


def event_time(message: dict[str, Any]) -> datetime:
    """Return when the event happened (``at``), or now for the save hook's ``created``."""
    try:
        at = datetime.fromisoformat(str(message["at"]))
    except (KeyError, ValueError):
        return timezone.now()
    return at if timezone.is_aware(at) else timezone.make_aware(at, UTC)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Formatter:
    """Turn one watch message into one line, for people (coloured) or machines (JSON)."""

    def __init__(self, style: Style, lookup: Lookup) -> None:
        self.style = style
        self.lookup = lookup
        self.event_styles: dict[str, Callable[[str], str]] = {
            "created": style.MIGRATE_HEADING,
            "dispatched": style.HTTP_REDIRECT,
            "delivered": style.SQL_COLTYPE,
            "read": style.SUCCESS,
            "archived": style.HTTP_NOT_MODIFIED,
            "unarchived": style.HTTP_NOT_MODIFIED,
            "unread": style.HTTP_NOT_MODIFIED,
            "snoozed": style.WARNING,
            "returned": style.WARNING,
            "expired": style.NOTICE,
            "recalled": style.ERROR,
            "edited": style.NOTICE,
        }
        self.level_styles: dict[str, Callable[[str], str]] = {
            "success": style.SUCCESS,
            "warning": style.WARNING,
            "error": style.ERROR,
        }

    def text(self, message: dict[str, Any], infos: list[Info | None], ids: list[int]) -> str:
        event = str(message.get("event"))
        at = timezone.localtime(event_time(message), _local_zone())
        clock = at.strftime("%H:%M:%S.") + f"{at.microsecond // 1000:03d}"
        paint = self.event_styles.get(event, str)
        first = infos[0] if infos else None
        if len(ids) == 1:
            which = f"#{ids[0]}"
        else:
            which = ",".join(f"#{i}" for i in ids[:3]) + (" …" if len(ids) > 3 else "")
        level = first.level if first is not None else "?"
        title = first.title if first is not None else "(not in the database)"
        if len(title) > TITLE_WIDTH:
            title = title[: TITLE_WIDTH - 1] + "…"
        title = json.dumps(title, ensure_ascii=False)
        if len(ids) > 1:
            title += f" and {len(ids) - 1} more"
        parts = [
            clock,
            paint(event.ljust(EVENT_WIDTH)),
            which,
            self.level_styles.get(level, str)(level.ljust(7)),
            title,
        ]
        line = "  ".join(parts)
        details = self.details(event, message, first, ids)
        return f"{line}  · {details}" if details else line

    def details(
        self, event: str, message: dict[str, Any], first: Info | None, ids: list[int]
    ) -> str:
        if event == "dispatched":
            recipients = message.get("recipients")
            audience = message.get("audience") or (first.audience if first else "?")
            count = plural(recipients, "recipient") if isinstance(recipients, int) else "?"
            return f"{audience}, {count}"
        if event == "created":
            return f"for {first.target}" if first is not None else ""
        if "user" in message:
            text = f"{self.lookup.username(str(message['user']))}, {plural(len(ids), 'item')}"
            if event == "snoozed" and message.get("until"):
                until = event_time({"at": message["until"]})
                text += " until " + timezone.localtime(until, _local_zone()).strftime(
                    "%Y-%m-%d %H:%M %Z"
                )
            return text
        return ""

    def json(self, message: dict[str, Any], infos: list[Info | None], ids: list[int]) -> str:
        record = {key: value for key, value in message.items() if key != "v"}
        record.setdefault("at", timezone.now().isoformat())
        record["notifications"] = [
            {"id": i, "title": info.title, "level": info.level}
            if info is not None
            else {"id": i, "title": None, "level": None}
            for i, info in zip(ids, infos, strict=True)
        ]
        if "user" in message:
            record["username"] = self.lookup.username(str(message["user"]))
        return json.dumps(record, ensure_ascii=False, default=str)


def _local_zone() -> Any:
    """Return this machine's zone (a terminal shows its own clock, not the site's TIME_ZONE)."""
    return datetime.now().astimezone().tzinfo


class Command(BaseCommand):
    help = (
        "Print one line per pipeline event (created, dispatched, delivered, read, archived, "
        "snoozed, expired, …) as it happens. Only observes: dispatches nothing, writes nothing. "
        "Runs until Ctrl-C/SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user",
            metavar="USER",
            help="Only events for this user (a username or a primary key): their rows, and "
            "notifications whose audience includes them.",
        )
        parser.add_argument("--level", choices=LEVELS, help="Only notifications of this level.")
        parser.add_argument(
            "--json", action="store_true", help="One JSON object per line, for machines."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings = conf.get()
        self.configure(user=options["user"], level=options["level"], as_json=options["json"])
        self.channels = (settings.CHANNEL, observe.watch_channel(settings))
        self.stop_event = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: self.stop_event.set())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.run(settings)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.say("watch_notifications stopped.")

    def configure(
        self, *, user: str | None = None, level: str | None = None, as_json: bool = False
    ) -> None:
        """Set the filters and the output format (``user``: a username or a primary key)."""
        self.user_pk = find_user_pk(user) if user else None
        self.level = level
        self.as_json = bool(as_json)
        self.lookup = Lookup(self.user_pk)
        self.formatter = Formatter(self.style, self.lookup)

    def say(self, text: str) -> None:
        """Print a status line to stderr: stdout carries events only (clean for --json)."""
        self.stderr.write(text)
        self.stderr.flush()

    def run(self, settings: conf.NotificationSettings) -> None:
        """Subscribe and print until stopped; on a lost connection, back off and resubscribe."""
        delay = settings.RECONNECT_MIN_DELAY
        lost = False
        first = True
        where = redis_clients.describe(settings)
        while not self.stop_event.is_set():
            client = redis_clients.sync_client(
                socket_timeout=settings.HEALTH_CHECK_TIMEOUT,
                socket_connect_timeout=settings.HEALTH_CHECK_TIMEOUT,
                health_check_interval=settings.HEALTH_CHECK_INTERVAL,
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*self.channels)
                if first:
                    names = " and ".join(repr(name) for name in self.channels)
                    self.say(f"Watching {names} at {where}. Ctrl-C to stop.")
                    first = False
                elif lost:
                    self.say(f"Reconnected to Redis at {where}; watching again.")
                lost = False
                delay = settings.RECONNECT_MIN_DELAY
                while not self.stop_event.is_set():
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is not None and message.get("type") == "message":
                        self.handle_message(message["data"])
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if not lost:
                    self.say(
                        f"Redis connection lost ({exc}); reconnecting with backoff "
                        "(events meanwhile are not shown)."
                    )
                    lost = True
                self.stop_event.wait(delay * random.uniform(0.8, 1.2))  # noqa: S311
                delay = min(delay * 2, settings.RECONNECT_MAX_DELAY)
            finally:
                try:
                    pubsub.close()
                finally:
                    redis_clients.close(client)

    def handle_message(self, data: bytes | str) -> None:
        """Print the line for one message, if it passes the filters."""
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(message, dict):
            return
        event = message.get("event")
        if not isinstance(event, str) or event == "probe":  # the listener's self-probes
            return
        ids = event_ids(message)
        found = self.lookup.infos(ids)
        ids = [i for i in ids if i in found]
        if self.user_pk is not None:
            if "user" in message:
                if str(message["user"]) != self.user_pk:
                    return
            elif not any(info is not None and info.for_user for info in found.values()):
                return
        if self.level is not None:
            ids = [i for i in ids if found[i] is not None and found[i].level == self.level]
            if not ids:
                return
        infos = [found[i] for i in ids]
        if self.as_json:
            line = self.formatter.json(message, infos, ids)
        else:
            line = self.formatter.text(message, infos, ids)
        self.stdout.write(line)
        self.stdout.flush()


def find_user_pk(value: str) -> str:
    """Return the primary key (as str) of the user with this username, or this pk."""
    manager = get_user_model()._default_manager
    try:
        return str(manager.get_by_natural_key(value).pk)
    except manager.model.DoesNotExist:
        pass
    try:
        user = manager.filter(pk=value).first()
    except (ValidationError, ValueError, TypeError):
        user = None
    if user is None:
        raise CommandError(f"--user: no user with username or primary key {value!r}.")
    return str(user.pk)
