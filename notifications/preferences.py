"""Per-user notification preferences: muted categories, silenced toasts, quiet hours.

Muting works where it is cheap. Dispatch leaves muted users out of the audience in the
database (an anti-join on CategoryPreference), so they get no Delivery row; each socket
holds its user's muted categories and drops those pushes, so a broadcast stays one layer
message per audience. Toasts and quiet hours are the bell's business: the rows are stored
and counted, only the toast, the sound and the desktop pop-up stay away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import zoneinfo
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications import categories, deadlines
from notifications.categories import Category
from notifications.events import UserId, layer_preferences_event, user_group
from notifications.models import CategoryPreference, Notification, Preference

logger = logging.getLogger(__name__)

_HH_MM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class PreferencesError(ValueError):
    """A preferences change that cannot be saved; the message says why, for the user."""


# ---- who is muted (dispatch and sockets) --------------------------------------------------


def mutable(notification: Notification) -> Category | None:
    """Return the notification's category if users may leave it out, else None."""
    if notification.critical:
        return None
    category = categories.get(notification.category)
    return category if category is not None and category.mutable else None


def shown_in_bell(category: Category, bell: bool | None) -> bool:
    """The rule for one user and one category: their choice (``bell``, None without a row),
    else the category's default; an unmutable category is always shown."""
    if not category.mutable:
        return True
    return category.default if bell is None else bell


def _muted(category: Category) -> Q:
    """The users (as a condition on their pk) who muted ``category`` (a mutable one): those
    who said so, or, for one off by default, all who did not switch it on."""
    rows = CategoryPreference.objects.filter(category=category.slug)
    if category.default:
        return Q(pk__in=rows.filter(bell=False).values("user_id"))
    return ~Q(pk__in=rows.filter(bell=True).values("user_id"))


def recipients(notification: Notification, users: Any) -> Any:
    """Return ``users`` without those who muted the notification's category (a queryset)."""
    category = mutable(notification)
    return users if category is None else users.exclude(_muted(category))


def muted_count(notification: Notification, users: Any) -> int:
    """How many of ``users`` muted the notification's category (0 when none may)."""
    category = mutable(notification)
    return 0 if category is None else users.filter(_muted(category)).count()


def muted_pairs(pairs: Iterable[tuple[Notification, UserId]]) -> set[tuple[int, UserId]]:
    """Return the (notification id, user id) pairs whose user muted its category; one query."""
    wanted = [(n, user) for n, user in pairs if mutable(n) is not None]
    if not wanted:
        return set()
    rows = CategoryPreference.objects.filter(
        user_id__in={user for _, user in wanted}, category__in={n.category for n, _ in wanted}
    ).values_list("user_id", "category", "bell")
    choice = {(user, slug): bell for user, slug, bell in rows}
    return {
        (n.pk, user)
        for n, user in wanted
        if not shown_in_bell(categories.declared()[n.category], choice.get((user, n.category)))
    }


def muted_categories(user_id: UserId) -> frozenset[str]:
    """Return the slugs whose pushes this user's sockets drop (one indexed query)."""
    rows = dict(CategoryPreference.objects.filter(user_id=user_id).values_list("category", "bell"))
    return muted_from(rows)


def muted_from(bell_choices: dict[str, bool]) -> frozenset[str]:
    """The muted slugs given a user's ``{category: bell}`` rows and the declared defaults."""
    return frozenset(
        category.slug
        for category in categories.declared().values()
        if not shown_in_bell(category, bell_choices.get(category.slug))
    )


# ---- quiet hours -------------------------------------------------------------------------


def in_quiet_hours(
    enabled: bool,
    start: dt.time,
    end: dt.time,
    days: Iterable[int],
    zone: str,
    now: dt.datetime | None = None,
) -> bool:
    """Whether ``now`` falls in a quiet period: from ``start`` on each of ``days`` (Monday
    = 0) to the next ``end``, in ``zone``. ``start == end`` is the whole day."""
    if not enabled:
        return False
    local = (now or timezone.now()).astimezone(_zone(zone))
    days = set(days)
    here = local.time().replace(tzinfo=None)
    if start == end:
        return local.weekday() in days
    if start < end:
        return local.weekday() in days and start <= here < end
    # Overnight: the evening of a listed day, or the morning after one.
    if here >= start:
        return local.weekday() in days
    return here < end and (local.weekday() - 1) % 7 in days


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name) if name else timezone.get_current_timezone()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


# ---- read and write ----------------------------------------------------------------------


def preferences_read(user: Any) -> dict[str, Any]:
    """Return the user's preferences in the API's shape (every declared category present)."""
    rows = {row.category: row for row in CategoryPreference.objects.filter(user_id=user.pk)}
    shown: dict[str, Any] = {}
    for category in categories.declared().values():
        row = rows.get(category.slug)
        shown[category.slug] = {
            "label": category.label,
            "description": category.description,
            "mutable": category.mutable,
            "bell": shown_in_bell(category, row.bell if row else None),
            "toasts": row.toasts if row else True,
        }
    pref = Preference.objects.filter(user_id=user.pk).first() or Preference(user_id=user.pk)
    days = sorted({int(d) for d in pref.quiet_days if d.isdigit() and int(d) < 7})
    zone = pref.time_zone or timezone.get_current_timezone_name()
    return {
        "categories": shown,
        "quiet_hours": {
            "enabled": pref.quiet_hours_enabled,
            "start": pref.quiet_start.strftime("%H:%M"),
            "end": pref.quiet_end.strftime("%H:%M"),
            "days": days,
            "time_zone": zone,
            "active": in_quiet_hours(
                pref.quiet_hours_enabled, pref.quiet_start, pref.quiet_end, days, zone
            ),
        },
    }


def preferences_write(user: Any, data: Any, *, zone: str | None = None) -> dict[str, Any]:
    """Validate and save any part of the API's shape; tell the user's open sockets.

    Raises ``PreferencesError`` (nothing saved) for an unknown category, muting one the site
    marks unmutable, a time that is not HH:MM or days that are not 0-6.
    """
    choices, quiet = _parse(data)
    with transaction.atomic():
        for slug, change in choices.items():
            row, _ = CategoryPreference.objects.get_or_create(
                user_id=user.pk,
                category=slug,
                defaults={"bell": categories.declared()[slug].default},
            )
            for field, value in change.items():
                setattr(row, field, value)
            row.save()
        if quiet or zone:
            pref, _ = Preference.objects.get_or_create(user_id=user.pk)
            for field, value in quiet.items():
                setattr(pref, field, value)
            if zone:
                pref.time_zone = zone
            pref.save()
    shown = preferences_read(user)
    transaction.on_commit(lambda: tell_sockets(user.pk, shown))
    return shown


def _parse(data: Any) -> tuple[dict[str, dict[str, bool]], dict[str, Any]]:
    if not isinstance(data, dict):
        raise PreferencesError("Send an object with categories and/or quiet_hours.")
    unknown = set(data) - {"categories", "quiet_hours"}
    if unknown:
        raise PreferencesError(f"Unknown keys: {', '.join(sorted(unknown))}.")
    choices: dict[str, dict[str, bool]] = {}
    given = data.get("categories", {})
    if not isinstance(given, dict):
        raise PreferencesError("categories must be an object of slug -> {bell, toasts}.")
    declared = categories.declared()
    for slug, change in given.items():
        category = declared.get(slug)
        if category is None:
            raise PreferencesError(f"Unknown category {slug!r}; declared: {', '.join(declared)}.")
        if not isinstance(change, dict) or set(change) - {"bell", "toasts"}:
            raise PreferencesError(f"categories[{slug!r}] takes bell and toasts only.")
        for key, value in change.items():
            if not isinstance(value, bool):
                raise PreferencesError(f"categories[{slug!r}][{key!r}] must be true or false.")
        if change.get("bell") is False and not category.mutable:
            raise PreferencesError(f"{category.label} notifications cannot be muted.")
        choices[slug] = dict(change)
    quiet: dict[str, Any] = {}
    hours = data.get("quiet_hours", {})
    if not isinstance(hours, dict):
        raise PreferencesError("quiet_hours must be an object.")
    extra = set(hours) - {"enabled", "start", "end", "days", "time_zone", "active"}
    if extra:
        raise PreferencesError(f"Unknown quiet_hours keys: {', '.join(sorted(extra))}.")
    if "enabled" in hours:
        if not isinstance(hours["enabled"], bool):
            raise PreferencesError("quiet_hours.enabled must be true or false.")
        quiet["quiet_hours_enabled"] = hours["enabled"]
    for key, field in (("start", "quiet_start"), ("end", "quiet_end")):
        if key in hours:
            value = hours[key]
            match = _HH_MM.fullmatch(value) if isinstance(value, str) else None
            if match is None:
                raise PreferencesError(f"quiet_hours.{key} must be a time as HH:MM (24 h).")
            quiet[field] = dt.time(int(match[1]), int(match[2]))
    if "days" in hours:
        days = hours["days"]
        if (
            not isinstance(days, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in days)
            or not all(0 <= d <= 6 for d in days)
        ):
            raise PreferencesError("quiet_hours.days must be a list of 0-6 (Monday = 0).")
        quiet["quiet_days"] = "".join(str(d) for d in sorted(set(days)))
    return choices, quiet


def tell_sockets(user_id: UserId, shown: dict[str, Any]) -> None:
    """Push the new preferences to every socket of the user; best effort, bounded."""
    choices = {slug: c["bell"] for slug, c in shown["categories"].items()}
    try:
        deadlines.push_from_sync(
            apush_preferences,
            user_id,
            shown,
            sorted(muted_from(choices)),
            seconds=deadlines.PUSH_SECONDS + 0.5,
        )
    except Exception as exc:
        logger.warning("Could not push preferences to user %s's sockets (%r)", user_id, exc)


async def apush_preferences(user_id: UserId, shown: dict[str, Any], muted: list[str]) -> None:
    """Raises ``TimeoutError`` after ``deadlines.PUSH_SECONDS`` of a silent Redis; the
    sockets read the mutes again at their next ping, the bell its preferences at reload."""
    layer = get_channel_layer()
    group = user_group(user_id)
    async with asyncio.timeout(deadlines.PUSH_SECONDS):
        await layer.group_send(group, layer_preferences_event(shown, muted, group))
