"""``manage.py send_notification``: send a notification from the terminal, like ``PUBLISH``.

Examples::

    python manage.py send_notification --user alice --title Hi
    python manage.py send_notification --group demo-team --title "Deploy done" --level success
    echo "Back at 10:00" | python manage.py send_notification --all --title Maintenance
    python manage.py send_notification --staff --title Review --publish-at 2030-01-31T09:00

Validates as the admin does (the model's checks, and times that have already passed) and
says what it did, in the current time zone::

    Sent #42 "Hi" to alice (1 recipient); dispatch follows within a moment.
    Scheduled #43 "Review" for 2030-01-31 09:00 CET, to staff (2 recipients today).

With ``-v 0`` it prints the new notification's id alone, for scripts:
``ID=$(python manage.py send_notification -v 0 --all --title Hi)``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from notifications import services
from notifications.audience import audience_queryset

if TYPE_CHECKING:
    from notifications.models import Notification

LEVELS = ("info", "success", "warning", "error")
AUDIENCE_OPTIONS = ("user", "group", "staff", "all")
DATETIME_EXAMPLE = "e.g. 2030-01-31T09:00 or 2030-01-31T09:00:00+01:00"
# The option that sets each model field, so an error names what the user typed.
FIELD_OPTIONS = {
    "title": "--title",
    "body": "--body",
    "level": "--level",
    "url": "--url",
    "publish_at": "--publish-at",
    "expires_at": "--expires-at",
    "recipient": "--user",
    "group": "--group",
    "audience": "the audience",
}
# As in the admin (notifications.forms): a publish time this far back is "now" (the time it
# took to type the command); further back it is more likely a typo in the date.
PUBLISH_AT_GRACE = timedelta(minutes=5)
TIME_FORMAT = "%Y-%m-%d %H:%M %Z"


def parse_when(option: str, value: str | None) -> datetime | None:
    """Parse an ISO 8601 datetime; a naive one is taken in the current time zone."""
    if value is None or value == "":
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"{option}: {value!r} is not an ISO 8601 datetime ({DATETIME_EXAMPLE}).")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_current_timezone())
    return parsed


def describe_validation_error(exc: ValidationError) -> str:
    """Flatten a ValidationError into one line: ``field: message; field: message``."""
    if hasattr(exc, "error_dict"):
        parts = []
        for field, messages in exc.message_dict.items():
            option = FIELD_OPTIONS.get(field, field)
            prefix = "" if field == "__all__" else f"{option}: "
            parts.extend(prefix + message for message in messages)
        return "; ".join(parts)
    return "; ".join(exc.messages)


def read_body(stdin: IO[str] | None) -> str:
    """Return the body piped on stdin, or "" when stdin is a terminal, absent or unreadable."""
    if stdin is None or stdin.isatty():
        return ""
    try:
        return stdin.read().rstrip("\r\n")
    except (OSError, ValueError):
        return ""


class Command(BaseCommand):
    help = (
        "Create a notification and say what was sent (-v 0: print its id alone). Exactly one "
        "audience: --user, --group, --staff or --all. Validated as the admin validates. "
        "Without --body, the body is read from stdin when it is not a terminal."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the audience (exactly one), the content and the schedule options."""
        audience = parser.add_mutually_exclusive_group(required=True)
        audience.add_argument("--user", metavar="USERNAME", help="One user, by username.")
        audience.add_argument("--group", metavar="NAME", help="Every member of an auth group.")
        audience.add_argument("--staff", action="store_true", help="Every staff user.")
        audience.add_argument("--all", action="store_true", help="Every active user.")
        parser.add_argument("--title", required=True, help="Title (at most 200 characters).")
        parser.add_argument("--level", default="info", choices=LEVELS, help="Default: info.")
        parser.add_argument("--url", default="", help="Link: a relative path or http(s) URL.")
        parser.add_argument(
            "--body", default=None, help="Plain text; default: stdin if it is not a terminal."
        )
        parser.add_argument(
            "--publish-at",
            metavar="DATETIME",
            help=f"Schedule for later: ISO 8601, naive = current time zone ({DATETIME_EXAMPLE}).",
        )
        parser.add_argument(
            "--expires-at", metavar="DATETIME", help="Leave the bell after this (ISO 8601)."
        )
        parser.add_argument(
            "--category",
            default=None,
            help="A category of NOTIFICATIONS['CATEGORIES'] (default: DEFAULT_CATEGORY).",
        )
        parser.add_argument(
            "--critical",
            action="store_true",
            help="Ignore the recipients' mutes and quiet hours (security alerts, outages).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate the options, create the notification and say what was done."""
        audience = self.audience(options)
        if options["level"] not in LEVELS:
            raise CommandError(f"--level must be one of {', '.join(LEVELS)}.")
        fields = {
            "body": self.body(options),
            "level": options["level"],
            "url": options["url"] or "",
            "publish_at": parse_when("--publish-at", options["publish_at"]),
            "expires_at": parse_when("--expires-at", options["expires_at"]),
            "category": options.get("category"),
            "critical": bool(options.get("critical")),
        }
        check_times(fields["publish_at"], fields["expires_at"])
        try:
            notification = self.send(audience, options, options["title"], fields)
        except ValidationError as exc:
            raise CommandError(f"Not sent: {describe_validation_error(exc)}") from exc
        if int(options["verbosity"]) == 0:
            self.stdout.write(str(notification.pk))
        else:
            self.stdout.write(self.style.SUCCESS(summary(notification)))

    @staticmethod
    def audience(options: dict[str, Any]) -> str:
        """Return the one audience asked for, or fail if there is not exactly one."""
        chosen = [name for name in AUDIENCE_OPTIONS if options.get(name)]
        if len(chosen) != 1:
            raise CommandError("Give exactly one audience: --user, --group, --staff or --all.")
        return chosen[0]

    @staticmethod
    def body(options: dict[str, Any]) -> str:
        """Return --body, or what was piped on stdin when --body is absent."""
        if options["body"] is not None:
            return str(options["body"])
        return read_body(options.get("stdin", sys.stdin))

    def send(
        self, audience: str, options: dict[str, Any], title: str, fields: dict[str, Any]
    ) -> Notification:
        """Call the services API for the audience; return the saved Notification."""
        if audience == "user":
            user = find_user(options["user"])
            if not user.is_active:
                raise CommandError(
                    f"--user: {options['user']!r} is deactivated, so nobody would receive "
                    "the notification."
                )
            return services.notify(user, title, **fields)
        group = find_group(options["group"]) if audience == "group" else None
        return services.broadcast(title, audience=audience, group=group, **fields)


def check_times(publish_at: datetime | None, expires_at: datetime | None) -> None:
    """Refuse times that have passed, as the admin does (the model checks their order)."""
    now = timezone.now()
    if publish_at is not None and publish_at < now - PUBLISH_AT_GRACE:
        raise CommandError(
            f"--publish-at: {when(publish_at)} has already passed. Leave it out to send now."
        )
    if expires_at is not None and expires_at <= now:
        raise CommandError(
            f"--expires-at: {when(expires_at)} has already passed, so nobody would ever see "
            "the notification."
        )


def when(moment: datetime) -> str:
    """Return ``moment`` in the current time zone, e.g. ``2030-01-31 09:00 CET``."""
    return timezone.localtime(moment).strftime(TIME_FORMAT)


def describe_audience(notification: Notification) -> str:
    """Return who the notification is for, in words."""
    if notification.audience == "user":
        return notification.recipient.get_username()
    if notification.audience == "group":
        return f"group {notification.group.name}"
    return {"staff": "staff", "all": "everyone"}[notification.audience]


def summary(notification: Notification) -> str:
    """Return the sentence saying what was sent (or scheduled), to whom, and when."""
    count = audience_queryset(notification).count()
    recipients = f"{count} recipient" + ("" if count == 1 else "s")
    title = json.dumps(notification.title, ensure_ascii=False)
    target = describe_audience(notification)
    expiry = f" It expires at {when(notification.expires_at)}." if notification.expires_at else ""
    if notification.publish_at is not None and notification.publish_at > timezone.now():
        return (
            f"Scheduled #{notification.pk} {title} for {when(notification.publish_at)}, "
            f"to {target} ({recipients} today).{expiry}"
        )
    return (
        f"Sent #{notification.pk} {title} to {target} ({recipients}); "
        f"dispatch follows within a moment.{expiry}"
    )


def find_user(username: str) -> AbstractBaseUser:
    """Return the user with this username, or fail with a CommandError."""
    user_model = get_user_model()
    try:
        return user_model._default_manager.get_by_natural_key(username)
    except user_model.DoesNotExist:
        raise CommandError(f"No user with username {username!r}.") from None


def find_group(name: str) -> Group:
    """Return the auth group with this name, or fail with a CommandError."""
    try:
        return Group.objects.get(name=name)
    except Group.DoesNotExist:
        raise CommandError(f"No group named {name!r}.") from None
