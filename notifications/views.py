"""The inbox page: parse the request, call one selector or service, render (or redirect)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from notifications import conf
from notifications.api import DEFAULT_PAGE_SIZE, tell_other_tabs
from notifications.events import safe_link
from notifications.models import Delivery, DeliveryState, Level
from notifications.selectors import (
    InboxPage,
    annotate_groups,
    group_members,
    inbox_counts,
    inbox_page,
    item_rows,
)
from notifications.services import (
    deliveries_archive,
    deliveries_mark_all_read,
    deliveries_mark_read,
    deliveries_mark_unread,
    deliveries_snooze,
    deliveries_unarchive,
)

logger = logging.getLogger(__name__)

STATUS_UNREAD = "unread"
STATUS_SNOOZED = "snoozed"
STATUS_ARCHIVED = "archived"
STATUSES = (STATUS_UNREAD, STATUS_SNOOZED, STATUS_ARCHIVED)
# A body is one line of the list: the rest is a click away. Cut on the server so a long body
# does not travel; the stylesheet's ellipsis does the visible cut.
EXCERPT_CHARS = 160
# "Tomorrow" and "Next week" start the working day; "Later today" is a few hours on.
SNOOZE_MORNING = time(8, 0)
SNOOZE_LATER = timedelta(hours=3)


def _positive_id(raw: str | None) -> int | None:
    # isdigit() alone lets "²" through; ids are BigAutoField values (below 2**63).
    if raw and raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**63:
        return int(raw)
    return None


def _ids(raw: Iterable[str]) -> list[int]:
    # Each id may come as its own field (checkboxes) or comma-separated (one hidden field).
    values = (part.strip() for value in raw for part in value.split(","))
    return [n for n in map(_positive_id, values) if n is not None][: conf.get().MAX_IDS]


def _status(request: HttpRequest) -> str:
    status = request.GET.get("status", "")
    if not status and request.GET.get("filter") == "unread":  # the old name of the view
        return STATUS_UNREAD
    return status if status in STATUSES else ""


def _level(request: HttpRequest) -> str:
    level = request.GET.get("level", "")
    return level if level in Level.values else ""


def _inbox_url(status: str = "", level: str = "", group: str = "", **cursor: int) -> str:
    # The group comes first: a members page's address reads as the contract spells it
    # (?group=<key>&bucket_of=<id>), the view after it.
    query = {"group": group} if group else {}
    query.update({name: str(value) for name, value in cursor.items() if name == "bucket_of"})
    query.update({name: value for name, value in (("status", status), ("level", level)) if value})
    query.update({name: str(value) for name, value in cursor.items() if name != "bucket_of"})
    return reverse("notifications:inbox") + (f"?{urlencode(query)}" if query else "")


# Notification.group_key's max_length: a longer ?group= names no item.
GROUP_KEY_MAX = 200


@dataclass(frozen=True)
class GroupQuery:
    """A members page's item: ``?group=<key>&bucket_of=<id>`` (the head it was opened from)."""

    key: str
    bucket_of: int | None


def _group_query(request: HttpRequest) -> GroupQuery | None:
    """Return the item a members page shows, or None for the ordinary (collapsed) page."""
    if "group" not in request.GET:
        return None
    key = request.GET.get("group", "").strip()[:GROUP_KEY_MAX]
    return GroupQuery(key, _positive_id(request.GET.get("bucket_of")))


# ---- snooze presets ---------------------------------------------------------------------


def snooze_until(preset: str, now: datetime | None = None) -> datetime | None:
    """Return when a snooze preset ends, in the active (the user's) zone; None if unknown.

    ``later`` is three hours on; ``tomorrow`` 08:00 tomorrow; ``week`` 08:00 next Monday.
    An ISO 8601 value is taken as it is (naive = the user's zone), as the API takes it.
    """
    now = timezone.localtime(now or timezone.now())
    zone = timezone.get_current_timezone()
    if preset == "later":
        return now + SNOOZE_LATER
    if preset == "tomorrow":
        day = now.date() + timedelta(days=1)
    elif preset == "week":
        day = now.date() + timedelta(days=7 - now.weekday())
    else:
        try:
            moment = datetime.fromisoformat(preset)
        except ValueError:
            return None
        return timezone.make_aware(moment, zone) if timezone.is_naive(moment) else moment
    return timezone.make_aware(datetime.combine(day, SNOOZE_MORNING), zone)


# ---- POST: the verbs ------------------------------------------------------------------------

Verb = Callable[..., Any]
VERBS: dict[str, Verb] = {
    "read": deliveries_mark_read,
    "unread": deliveries_mark_unread,
    "archive": deliveries_archive,
    "unarchive": deliveries_unarchive,
}
DONE_MESSAGES = {
    "read": lambda n: ngettext("Marked %(n)d as read.", "Marked %(n)d as read.", n),
    "unread": lambda n: ngettext("Marked %(n)d as unread.", "Marked %(n)d as unread.", n),
    "archive": lambda n: ngettext("%(n)d marked done.", "%(n)d marked done.", n),
    "unarchive": lambda n: ngettext("Moved %(n)d to the inbox.", "Moved %(n)d to the inbox.", n),
    "snooze": lambda n: ngettext("Snoozed %(n)d.", "Snoozed %(n)d.", n),
}


def _act(request: HttpRequest) -> list[int]:
    """Apply the posted verb to the posted ids (the user's own only) and tell the other tabs;
    return the ids it was asked about (a members page finds its way on from them)."""
    user = request.user
    # group=1: each id is a head standing for its whole item (the collapsed page's forms);
    # a members page and an expanded member post without it, for that row alone.
    as_one = request.POST.get("group") == "1"
    if request.POST.get("all"):
        result = deliveries_mark_all_read(user)
        action = "read"
    else:
        action = request.POST.get("action", "read")
        preset = request.POST.get("snooze") or request.POST.get("until")
        if preset:
            action = "snooze"
        ids = _ids(request.POST.getlist("ids"))
        if not ids:
            messages.info(
                request, gettext("Select one or more notifications first."), fail_silently=True
            )
            return []
        if action == "snooze":
            until = snooze_until(preset or "")
            if until is None or not timezone.now() < until <= timezone.now() + timedelta(days=366):
                messages.error(
                    request, gettext("That snooze time is not valid."), fail_silently=True
                )
                return []
            result = deliveries_snooze(user, ids, until, group=as_one)
        elif action in VERBS:
            result = VERBS[action](user, ids, group=as_one)
        else:
            messages.error(request, gettext("Unknown action."), fail_silently=True)
            return []
    tell_other_tabs(user.pk, result)
    if result.ids:
        text = DONE_MESSAGES[action](len(result.ids)) % {"n": len(result.ids)}
        messages.success(request, text, fail_silently=True)
    return [] if request.POST.get("all") else ids


def _members_before(request: HttpRequest, group: GroupQuery | None, status: str) -> list[int]:
    """The ids of a members page's item before a verb runs (none off a members page)."""
    if group is None or group.bucket_of is None:
        return []
    members = group_members(request.user, group.bucket_of, status or None)
    return [delivery.notification_id for delivery in members]


def _after_members_post(
    request: HttpRequest,
    group: GroupQuery,
    status: str,
    level: str,
    members: list[int],
    acted: list[int],
) -> str:
    """Where a members page's form comes back to.

    The page names its item by one row (``bucket_of``); a verb on that row takes it out of
    the item (read, Done...), so the page goes on from a member that was not acted on, or
    back to the inbox when none is left.
    """
    if group.bucket_of not in acted:
        return request.get_full_path()
    rest = [notification_id for notification_id in members if notification_id not in acted]
    if not rest:
        return _inbox_url(status, level)
    return _inbox_url(status, level, group.key, bucket_of=rest[0])


# ---- GET: the page --------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxItem:
    """One row of the inbox page, ready to render."""

    id: int
    title: str
    body: str
    level: str
    level_label: str
    url: str
    arrived_at: datetime  # in the user's zone
    read: bool
    archived: bool
    snoozed_until: datetime | None  # in the user's zone
    group_key: str = ""
    actor_name: str = ""  # who caused it, for a live arrival of its key to name
    # Rows in the item this row heads (1: not grouped, or a member shown on its own).
    group_count: int = 1
    group_actors: tuple[str, ...] = ()
    group_actor_count: int = 0
    actor_line: str = ""  # "Ana, Bo and 11 others", heads only
    members_url: str = ""  # the members as a page (the expander without JavaScript)

    @property
    def grouped(self) -> bool:
        """Whether the row stands for more than itself (its verbs act on the whole item)."""
        return self.group_count > 1

    @property
    def actors_json(self) -> str:
        """The head's actor names as JSON, for inbox.js to redraw the line when one arrives."""
        return json.dumps(list(self.group_actors))

    @property
    def more_count(self) -> int:
        """How many members the expander brings ("12 more"): the item less its head."""
        return self.group_count - 1


@dataclass
class DayGroup:
    """The rows that arrived on one day of the user's calendar."""

    day: date
    label: str
    items: list[InboxItem] = field(default_factory=list)


def actor_line(names: Iterable[str], actor_count: int, count: int) -> str:
    """Return a group head's actor line: "Ana", "Ana and Bo", "Ana, Bo and Cy", "Ana, Bo
    and 11 others", or "13 notifications" when nobody is named.

    ``names`` are up to three distinct actors, newest first, of ``actor_count`` in all; the
    bell (bell.js ``actorLine``) builds the same line by the same rule, so a group reads
    alike in both. Each shape is a string of its own: a translation orders the names.
    """
    shown = [name for name in names if name]
    total = max(len(shown), actor_count)
    if not shown:
        return ngettext("%(n)d notification", "%(n)d notifications", count) % {"n": count}
    first, second, third = ([*shown, "", ""])[:3]
    if total == 1:
        return first
    if len(shown) == 1:
        others = total - 1
        return ngettext("%(first)s and one other", "%(first)s and %(n)d others", others) % {
            "first": first,
            "n": others,
        }
    if total == 2:
        return gettext("%(first)s and %(second)s") % {"first": first, "second": second}
    if total == 3 and third:
        return gettext("%(first)s, %(second)s and %(third)s") % {
            "first": first,
            "second": second,
            "third": third,
        }
    others = total - 2
    return ngettext(
        "%(first)s, %(second)s and one other",
        "%(first)s, %(second)s and %(n)d others",
        others,
    ) % {"first": first, "second": second, "n": others}


def _group_parts(delivery: Delivery, status: str, level: str) -> dict[str, Any]:
    """The group fields of a row: a head's size, actors and members link; a plain row's 1."""
    key = delivery.notification.group_key
    count = int(getattr(delivery, "group_count", 1) or 1)
    if not key or count <= 1:
        return {"group_key": key, "actor_name": delivery.notification.actor_name if key else ""}
    names = tuple(getattr(delivery, "group_actors", ()) or ())
    actors = int(getattr(delivery, "group_actor_count", len(names)) or 0)
    return {
        "group_key": key,
        "group_count": count,
        "group_actors": names,
        "group_actor_count": actors,
        "actor_line": actor_line(names, actors, count),
        "members_url": _inbox_url(status, level, key, bucket_of=delivery.notification_id),
    }


def _inbox_item(delivery: Delivery, status: str = "", view_level: str = "") -> InboxItem:
    notification = delivery.notification
    level = notification.level if notification.level in Level.values else Level.INFO
    body = " ".join(notification.body.split())
    if len(body) > EXCERPT_CHARS:
        body = body[: EXCERPT_CHARS - 1].rstrip() + "…"
    snoozed = delivery.snoozed_until
    return InboxItem(
        id=notification.pk,
        title=notification.title,
        body=body,
        level=level,
        level_label=Level(level).label,
        url=safe_link(notification.url),
        # Arrival, not creation: a scheduled notification arrives at its time.
        arrived_at=timezone.localtime(notification.dispatched_at or notification.created_at),
        read=delivery.state == DeliveryState.READ,
        archived=delivery.archived_at is not None,
        snoozed_until=timezone.localtime(snoozed) if snoozed and snoozed > timezone.now() else None,
        **_group_parts(delivery, status, view_level),
    )


def day_label(day: date, today: date) -> str:
    """Return "Today", "Yesterday" or the date, "Monday 30 November" (a past year added)."""
    if day == today:
        return gettext("Today")
    if day == today - timedelta(days=1):
        return gettext("Yesterday")
    return format_date(day, "l j F" if day.year == today.year else "l j F Y")


def group_by_day(items: Iterable[InboxItem], today: date) -> list[DayGroup]:
    """Split rows (newest first) into days of the user's calendar, keeping their order."""
    groups: list[DayGroup] = []
    for item in items:
        day = item.arrived_at.date()
        if not groups or groups[-1].day != day:
            groups.append(DayGroup(day, day_label(day, today)))
        groups[-1].items.append(item)
    return groups


def _row_prototype() -> InboxItem:
    """Return the blank row inbox.js clones for a live notification (it fills in the rest).

    It is drawn as a group head, so the clone has the actor line, the expander and the
    form's group field; the script drops them from a row that heads no group.
    """
    return InboxItem(
        id=0,
        title="",
        body="",
        level=Level.INFO,
        level_label=Level.INFO.label,
        url="/",
        arrived_at=timezone.localtime(),
        read=False,
        archived=False,
        snoozed_until=None,
        group_count=2,
        members_url="/",
    )


def _script_strings() -> dict[str, Any]:
    """Return the words inbox.js needs, translated (passed with json_script)."""
    return {
        "today": gettext("Today"),
        "yesterday": gettext("Yesterday"),
        "select": gettext("Select “%(title)s”"),
        "markRead": gettext("Mark read: %(title)s"),
        "markUnread": gettext("Mark unread: %(title)s"),
        "snooze": gettext("Snooze: %(title)s"),
        "done": gettext("Done: %(title)s"),
        "moveToInbox": gettext("Move to inbox: %(title)s"),
        "withSelected": gettext("With the selected:"),
        "selected": gettext("%(n)s selected"),
        "levels": {value: str(label) for value, label in Level.choices},
        "failed": gettext("That did not go through. Try again."),
        "newOne": gettext("New: %(title)s"),
        # A group head's actor line, shape by shape (views.actor_line is the same rule).
        "groupNotifications": gettext("%(n)s notifications"),
        "groupTwo": gettext("%(first)s and %(second)s"),
        "groupThree": gettext("%(first)s, %(second)s and %(third)s"),
        "groupOneOther": gettext("%(first)s and one other"),
        "groupOthers": gettext("%(first)s and %(n)s others"),
        "groupTwoOneOther": gettext("%(first)s, %(second)s and one other"),
        "groupTwoOthers": gettext("%(first)s, %(second)s and %(n)s others"),
        "more": gettext("%(n)s more"),
        "moreLabel": gettext("Show the %(n)s more in this group"),
        "loadMore": gettext("Show more"),
        "membersOf": gettext("The rest of this group: %(who)s"),
        "results": {
            "read": gettext("Marked %(n)s as read."),
            "unread": gettext("Marked %(n)s as unread."),
            "archived": gettext("%(n)s marked done."),
            "unarchived": gettext("Moved %(n)s to the inbox."),
            "snoozed": gettext("Snoozed %(n)s until %(until)s."),
        },
    }


VIEW_LABELS = (
    ("", _("Inbox")),
    (STATUS_UNREAD, _("Unread")),
    (STATUS_SNOOZED, _("Snoozed")),
    (STATUS_ARCHIVED, _("Archived")),
)
LEVEL_LABELS = (("", _("All levels")), *((value, label) for value, label in Level.choices))


def _page(
    request: HttpRequest,
    group: GroupQuery | None,
    status: str,
    level: str,
    before: int | None,
    after: int | None,
) -> InboxPage:
    """One page: the view's items (heads), or on a members page the rows of one item."""
    view = {"status": status or None, "level": level or None, "before": before, "after": after}
    if group is None:
        return inbox_page(request.user, limit=DEFAULT_PAGE_SIZE, **view)
    try:
        return inbox_page(
            request.user,
            limit=DEFAULT_PAGE_SIZE,
            group=group.key,
            bucket_of=group.bucket_of,
            **view,
        )
    except ValueError:  # Archived or Snoozed without bucket_of: no item is named
        return InboxPage(0, [], None, None, inbox_counts(request.user))


def _cursor_url(
    status: str, level: str, group: GroupQuery | None, **cursor: int | None
) -> str | None:
    """A pager link (None when there is no page that way), on a members page within it."""
    if not any(cursor.values()):
        return None
    marks = {name: value for name, value in cursor.items() if value}
    if group is None:
        return _inbox_url(status, level, **marks)
    if group.bucket_of is not None:
        marks = {"bucket_of": group.bucket_of, **marks}
    return _inbox_url(status, level, group.key, **marks)


def _members_heading(
    request: HttpRequest, group: GroupQuery | None, status: str, level: str
) -> dict[str, Any] | None:
    """What a members page says above its rows: the item's actor line and size, the way
    back. Two queries (the item's head, then its size and actors), members pages only."""
    if group is None:
        return None
    back = {"back_url": _inbox_url(status, level), "key": group.key}
    try:
        rows = item_rows(
            request.user,
            group.key,
            status=status or None,
            level=level or None,
            bucket_of=group.bucket_of,
        )
    except ValueError:
        return back
    head = rows.order_by("-id").first()
    if head is None:
        return back
    annotate_groups([head], request.user, status or None, level or None)
    count = head.group_count  # type: ignore[attr-defined]
    names = head.group_actors  # type: ignore[attr-defined]
    actors = head.group_actor_count  # type: ignore[attr-defined]
    return {
        **back,
        "count": count,
        "actor_line": actor_line(names, actors, count),
        "title": head.notification.title,
        "bucket_of": group.bucket_of or head.notification_id,
    }


@login_required
@require_http_methods(["GET", "POST"])
def inbox(request: HttpRequest) -> HttpResponse:
    """The inbox: Inbox / Unread / Snoozed / Done views, a level filter, grouped by day;
    POST applies a verb (read, unread, archive, unarchive, snooze) and comes back."""
    status, level = _status(request), _level(request)
    group = _group_query(request)
    if request.method == "POST":
        members = _members_before(request, group, status)
        acted = _act(request)
        if group is not None and not request.POST.get("all"):
            return redirect(_after_members_post(request, group, status, level, members, acted))
        # Back where the form was, minus a cursor when everything was marked read.
        return redirect(
            _inbox_url(status, level) if request.POST.get("all") else request.get_full_path()
        )
    if request.GET.get("counts") == "1":
        # inbox.js asks after a burst of changes: the views' sizes are the server's to know.
        return JsonResponse({"counts": inbox_counts(request.user)})
    # A mangled cursor shows the newest page rather than an error.
    before = _positive_id(request.GET.get("before"))
    after = _positive_id(request.GET.get("after"))
    page = _page(request, group, status, level, before, after)
    items = [_inbox_item(delivery, status, level) for delivery in page.deliveries]
    today = timezone.localdate()
    counts = dict(page.counts)
    views = [
        {
            "key": key,
            "label": label,
            "url": _inbox_url(key, level),
            "count": counts.get(key) if key else None,
            "current": key == status,
        }
        for key, label in VIEW_LABELS
    ]
    levels = [
        {"key": key, "label": label, "url": _inbox_url(status, key), "current": key == level}
        for key, label in LEVEL_LABELS
    ]
    return render(
        request,
        "notifications/inbox.html",
        {
            "base_template": conf.get().BASE_TEMPLATE,
            "page": page,
            "counts": counts,
            "items": items,
            "groups": group_by_day(items, today),
            "today": today,
            "status": status,
            "level": level,
            "level_label": dict(LEVEL_LABELS).get(level, ""),
            "views": views,
            "levels": levels,
            "current_view": dict(VIEW_LABELS)[status],
            "paged": before is not None or after is not None,
            "first_page": page.newer is None,
            "newest_url": _inbox_url(status, level),
            "inbox_url": _inbox_url("", level),
            "older_url": _cursor_url(status, level, group, before=page.older),
            "newer_url": _cursor_url(status, level, group, after=page.newer),
            "members_of": _members_heading(request, group, status, level),
            "api_url": reverse("notifications:api-list"),
            "read_url": reverse("notifications:api-read"),
            "snooze_tomorrow": snooze_until("tomorrow"),
            "snooze_week": snooze_until("week"),
            "row_prototype": _row_prototype(),
            "strings": _script_strings(),
        },
    )
